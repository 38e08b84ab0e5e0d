package store

// SetHourlyViaSQL makes QueryRange read the hourly tier with the
// pre-packing SQL path (true) or the packed path (false, the default).
func SetHourlyViaSQL(on bool) { hourlyViaSQL.Store(on) }
