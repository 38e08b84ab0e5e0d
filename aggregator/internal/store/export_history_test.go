package store

// SetEntityViaTx makes QueryRange read one entity's hourly history in a
// transaction with several round trips (true), as before the one-round-trip
// read, or in one round trip (false, the default).
func SetEntityViaTx(on bool) { entityViaTx.Store(on) }
