package lab

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hapscope/hapscope/internal/labtest"
)

// testMods is a small module tree: br_netfilter → bridge → stp → llc,
// bridge → llc; nft_chain_nat → nf_nat → nf_conntrack, nf_tables.
func testMods() map[string]*modEntry {
	return map[string]*modEntry{
		"llc":           {rel: "kernel/net/llc/llc.ko.xz"},
		"stp":           {rel: "kernel/net/802/stp.ko.xz", depends: []string{"llc"}},
		"bridge":        {rel: "kernel/net/bridge/bridge.ko.xz", depends: []string{"stp", "llc"}},
		"br_netfilter":  {rel: "kernel/net/bridge/br_netfilter.ko.xz", depends: []string{"bridge"}},
		"nf_conntrack":  {rel: "kernel/net/netfilter/nf_conntrack.ko.xz"},
		"nf_nat":        {rel: "kernel/net/netfilter/nf_nat.ko.xz", depends: []string{"nf_conntrack"}},
		"nf_tables":     {rel: "kernel/net/netfilter/nf_tables.ko.xz"},
		"nft_chain_nat": {rel: "kernel/net/netfilter/nft_chain_nat.ko.xz", depends: []string{"nf_tables", "nf_nat"}, aliases: []string{"nft-chain-2-nat", "nft-chain-10-nat"}},
		"veth":          {rel: "kernel/drivers/net/veth.ko.xz"},
	}
}

func TestModuleIndexRoundTrip(t *testing.T) {
	dep, alias := formatModuleIndex(testMods())
	deps, err := labtest.ParseModulesDep(dep)
	if err != nil {
		t.Fatal(err)
	}
	got := deps["br_netfilter"]
	want := labtest.ModuleDep{File: "kernel/net/bridge/br_netfilter.ko.xz", Deps: []string{"kernel/net/llc/llc.ko.xz", "kernel/net/802/stp.ko.xz", "kernel/net/bridge/bridge.ko.xz"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("br_netfilter (-want +got):\n%s", d)
	}
	// Every dependency comes after its own dependencies in load order.
	for name, d := range deps {
		pos := map[string]int{}
		for i, f := range append(slices.Clone(d.Deps), d.File) {
			pos[f] = i
		}
		for _, f := range d.Deps {
			for _, dd := range deps[moduleName(f)].Deps {
				if pos[dd] > pos[f] {
					t.Errorf("%s: %s loaded after %s, which needs it", name, dd, f)
				}
			}
		}
	}
	if len(deps) != len(testMods()) {
		t.Errorf("%d modules parsed, want %d", len(deps), len(testMods()))
	}
	if want := "alias nft-chain-2-nat nft_chain_nat\nalias nft-chain-10-nat nft_chain_nat\n"; string(alias) != want {
		t.Errorf("modules.alias:\n%s\nwant\n%s", alias, want)
	}
}

func TestDebugModuleFiles(t *testing.T) {
	dep, _ := formatModuleIndex(testMods())
	deps, err := labtest.ParseModulesDep(dep)
	if err != nil {
		t.Fatal(err)
	}
	got := debugModuleFiles(deps, []string{"br_netfilter", "nft_*"})
	want := []string{
		"kernel/net/802/stp.ko", "kernel/net/bridge/br_netfilter.ko", "kernel/net/bridge/bridge.ko",
		"kernel/net/llc/llc.ko", "kernel/net/netfilter/nf_conntrack.ko", "kernel/net/netfilter/nf_nat.ko",
		"kernel/net/netfilter/nf_tables.ko", "kernel/net/netfilter/nft_chain_nat.ko",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("files (-want +got):\n%s", d)
	}
}

func TestExtractedStamps(t *testing.T) {
	root := t.TempDir()
	if extracted(root, []string{"kernel/a.ko"}) {
		t.Fatal("no stamp, yet extracted")
	}
	if err := os.WriteFile(filepath.Join(root, debugModulesStamp+"1"), []byte("kernel/a.ko\nkernel/b.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, debugModulesStamp+"2"), []byte("kernel/c.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !extracted(root, []string{"kernel/b.ko", "kernel/c.ko"}) {
		t.Error("files of two stamps not seen as extracted")
	}
	if extracted(root, []string{"kernel/a.ko", "kernel/d.ko"}) {
		t.Error("a file no stamp lists seen as extracted")
	}
}
