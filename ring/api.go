package ring

// CONTRACT (fixed; engine and acct are written against it).
//
//	r := ring.New[T](capacity)   // capacity rounded up to a power of two
//	ok := r.TryPush(v)           // any goroutine; false when full
//	r.Push(v)                    // any goroutine; waits (spins, then parks) while full
//	v, ok := r.TryPop()          // single consumer only
//	n := r.PopBatch(dst)         // single consumer only; fills dst[:n]
//	r.Len()                      // approximate
