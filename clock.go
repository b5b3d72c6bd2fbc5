package clawops

import "time"

// Clock tells the time. Rooms take a Clock instead of calling time.Now so that approval
// TTLs, heartbeats, command expiry and cron can be tested without sleeping.
type Clock interface {
	Now() time.Time
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns the current time.
func (SystemClock) Now() time.Time { return time.Now() }

// ClockOrSystem returns c, or the system clock when c is nil.
func ClockOrSystem(c Clock) Clock {
	if c == nil {
		return SystemClock{}
	}
	return c
}
