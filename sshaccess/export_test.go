package sshaccess

// MinReuseLeft is minReuseLeft, for the tests.
const MinReuseLeft = minReuseLeft
