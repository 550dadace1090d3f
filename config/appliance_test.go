package config

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// TestApplianceUnitMatchesConfig checks that the systemd unit grants write
// access to exactly the directories the packaged smta.conf uses, and runs
// the file the package installs. ProtectSystem=strict makes any other path
// read-only, so a mismatch only shows up as a failure at run time.
func TestApplianceUnitMatchesConfig(t *testing.T) {
	c, err := Load("../appliance/smta.conf")
	if err != nil {
		t.Fatalf("Load(../appliance/smta.conf):\n%v", err)
	}
	unit, err := os.ReadFile("../appliance/smta.service")
	if err != nil {
		t.Fatal(err)
	}

	settings := map[string]string{}
	for line := range strings.Lines(string(unit)) {
		line = strings.TrimSpace(line)
		if key, value, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			settings[key] = value
		}
	}

	writable := strings.Fields(settings["ReadWritePaths"])
	for _, dir := range []string{c.SpoolDir, c.LogDir} {
		if !slices.Contains(writable, dir) {
			t.Errorf("ReadWritePaths = %q, want it to contain %s", writable, dir)
		}
	}
	if got, want := settings["ExecStart"], "/usr/bin/smta run --config /etc/smta/smta.conf"; got != want {
		t.Errorf("ExecStart = %q, want %q", got, want)
	}
	if got, want := settings["ExecReload"], "/bin/kill -HUP $MAINPID"; got != want {
		t.Errorf("ExecReload = %q, want %q", got, want)
	}
	if got, want := settings["LimitNOFILE"], "1048576"; got != want {
		t.Errorf("LimitNOFILE = %q, want %q", got, want)
	}

	pkg, err := os.ReadFile("../appliance/nfpm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"dst: /etc/smta/smta.conf", "dst: /usr/bin/smta\n", "src: appliance/smta.conf"} {
		if !strings.Contains(string(pkg), want) {
			t.Errorf("appliance/nfpm.yaml lacks %q", want)
		}
	}
}
