package labtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// ModuleDebugFiles returns, for host tests, the .ko with DWARF of each
// module (paths below kernel/, e.g. "drivers/net/veth.ko") of a Debian lab
// kernel release, from <lab cache>/dbg-modules/<release>/ (where lab fetch
// -dbg extracts them), extracting the missing ones there from the lab's
// cached -dbg package. It skips t when neither is there; under
// HAPSCOPE_REQUIRE_LAB=1 (make test) that fails t.
func ModuleDebugFiles(t testing.TB, release string, rels ...string) []string {
	t.Helper()
	cache := os.Getenv("HAPSCOPE_LAB_CACHE")
	if cache == "" {
		d, err := os.UserCacheDir()
		if err != nil {
			t.Fatal(err)
		}
		cache = filepath.Join(d, "hapscope-lab")
	}
	dst := filepath.Join(cache, "dbg-modules", release)
	inTree := func(rel string) string {
		return filepath.Join(dst, "usr/lib/debug/lib/modules", release, "kernel", rel)
	}
	var missing []string
	for _, r := range rels {
		if _, err := os.Stat(inTree(r)); err != nil {
			missing = append(missing, "./usr/lib/debug/lib/modules/"+release+"/kernel/"+r)
		}
	}
	fail := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("HAPSCOPE_REQUIRE_LAB") == "1" {
			t.Fatalf(format+" (HAPSCOPE_REQUIRE_LAB=1)", args...)
		}
		t.Skipf(format, args...)
	}
	if len(missing) > 0 {
		debs, _ := filepath.Glob(filepath.Join(cache, "debs", "linux-image-"+release+"-dbg_*.deb"))
		if len(debs) == 0 {
			fail("no module debug files of %s in %s and no linux-image-%s-dbg package in %s/debs: run `make fetch` (lab tooling)", release, dst, release, cache)
		}
		if err := os.MkdirAll(dst, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Logf("extracting %d modules from %s", len(missing), debs[0])
		cmd := exec.Command("sh", append([]string{"-c", `deb=$1 dst=$2; shift 2; dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dst" "$@"`, "sh", debs[0], dst}, missing...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			fail("extract module debug files from %s: %v: %s", debs[0], err, out)
		}
	}
	var out []string
	for _, r := range rels {
		out = append(out, inTree(r))
	}
	return out
}
