package engine

import (
	"testing"
	"time"
)

func TestTimerWheel(t *testing.T) {
	tests := []struct {
		name     string
		at       int64 // tick the entry is scheduled for
		deadline int64 // the owner's deadline when the entry comes due
		advance  int64 // ticks to advance
		fired    bool
	}{
		{"due", 5, 5, 5, true},
		{"not yet due", 5, 5, 4, false},
		{"deadline moved", 5, 9, 8, false},
		{"moved deadline reached", 5, 9, 9, true},
		{"beyond one turn", 3 * wheelBuckets, 3 * wheelBuckets, 3*wheelBuckets - 1, false},
		{"beyond one turn reached", 3 * wheelBuckets, 3 * wheelBuckets, 3 * wheelBuckets, true},
		{"past tick means next", -10, 1, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newTimerWheel(time.Millisecond, time.Now())
			w.schedule(timerEntry{slot: 1, gen: 7}, tt.at)
			fired := false
			due := func(e timerEntry) {
				if e.slot != 1 || e.gen != 7 {
					t.Fatalf("due(%+v), want slot 1 gen 7", e)
				}
				if tt.deadline > w.now {
					w.schedule(e, tt.deadline) // what shard.expire does
					return
				}
				fired = true
			}
			for range tt.advance {
				w.advance(w.now+1, due)
			}
			if fired != tt.fired {
				t.Errorf("after %d ticks fired = %v, want %v", tt.advance, fired, tt.fired)
			}
		})
	}
}

func TestTimerWheelTicks(t *testing.T) {
	origin := time.Now()
	w := newTimerWheel(10*time.Millisecond, origin)
	tests := []struct {
		d    time.Duration
		want int64
	}{
		{0, 0},
		{time.Millisecond, 1},
		{10 * time.Millisecond, 1},
		{11 * time.Millisecond, 2},
		{5 * time.Minute, 30000},
	}
	for _, tt := range tests {
		if got := w.ticksFor(tt.d); got != tt.want {
			t.Errorf("ticksFor(%v) = %d, want %d", tt.d, got, tt.want)
		}
	}
	if got := w.ticksAt(origin.Add(25 * time.Millisecond)); got != 2 {
		t.Errorf("ticksAt(origin+25ms) = %d, want 2", got)
	}
}
