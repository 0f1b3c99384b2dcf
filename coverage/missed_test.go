package coverage

import (
	"errors"
	"testing"
)

func TestMissedTotal(t *testing.T) {
	m := Missed{Program: 3, Retired: 4, Links: []LinkMissed{{Missed: 5}, {Missed: 0}, {Missed: 7}}}
	if got := m.Total(); got != 19 {
		t.Errorf("Total = %d, want 19 (program + links + retired)", got)
	}
}

func TestMissedAfterClose(t *testing.T) {
	if _, err := (&Tracer{}).Missed(); !errors.Is(err, ErrClosed) {
		t.Errorf("Missed on a closed tracer: %v, want ErrClosed", err)
	}
}
