package sqlite

// StopCheckpoints stops s's background checkpoints and waits for one that is
// running, for tests that watch the database file while s is open.
func StopCheckpoints(s *Store) {
	s.wmu.Lock()
	c := s.ckpt
	s.ckpt = nil
	s.wmu.Unlock()
	if c != nil {
		c.close()
	}
}
