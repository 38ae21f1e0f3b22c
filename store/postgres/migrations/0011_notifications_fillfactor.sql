-- The outbox updates each notification soon after it is inserted: its claim
-- (next_at, attempts, version) and then its delivery record (state,
-- done_at). A claim changes no indexed column, so PostgreSQL can write the
-- new row version on the same page without a new entry in every index (a
-- HOT update), but only if that page has room; filled to the brim by the
-- inserts, it had none. Pages of new rows are now filled to half: room for
-- the claims of all the rows on a page, which a batch writes together.
ALTER TABLE notifications SET (fillfactor = 50);
