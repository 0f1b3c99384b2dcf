package nameset

import (
	"slices"
	"testing"
)

func TestMinus(t *testing.T) {
	a := map[string]bool{"vfs_read": true, "schedule": true, "ksys_read": true}
	b := map[string]bool{"schedule": true, "tcp_sendmsg": true}
	if got, want := Minus(a, b), []string{"ksys_read", "vfs_read"}; !slices.Equal(got, want) {
		t.Errorf("Minus = %v, want %v", got, want)
	}
	if got := Minus(b, b); len(got) != 0 {
		t.Errorf("Minus(b, b) = %v, want empty", got)
	}
}
