// Package layering holds the test that keeps smta's package layering: the
// protocol and ring packages stand alone, and the inbound engine and the
// outbound side (spool, queue, delivery) meet only in the daemon's wiring.
package layering

import (
	"os/exec"
	"strings"
	"testing"
)

// forbidden maps a package to the smta packages it must never import,
// directly or indirectly. "*" forbids every smta package.
var forbidden = map[string][]string{
	"smta/ring":     {"*"},
	"smta/smtp":     {"*"},
	"smta/spool":    {"smta/engine"},
	"smta/queue":    {"smta/engine"},
	"smta/delivery": {"smta/engine", "smta/spool", "smta/queue"},
	"smta/engine":   {"smta/spool", "smta/queue", "smta/delivery", "smta/acct"},
	"smta/config":   {"smta/engine", "smta/spool", "smta/queue", "smta/delivery"},
}

func TestPackageLayering(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, "smta/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		deps[f[0]] = f[1:]
	}
	for pkg, bans := range forbidden {
		all, ok := deps[pkg]
		if !ok {
			t.Errorf("package %s not found by go list", pkg)
			continue
		}
		for _, dep := range all {
			if !strings.HasPrefix(dep, "smta/") {
				continue
			}
			for _, ban := range bans {
				if ban == "*" || dep == ban {
					t.Errorf("%s imports %s, which the layering forbids", pkg, dep)
				}
			}
		}
	}
}
