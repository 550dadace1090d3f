package delivery

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
)

// originalWire is a received message in wire form; ".signature" is stuffed.
const originalWire = "From: Sender <sender@example.org>\r\n" +
	"To: a@example.com\r\n" +
	"Subject: quarterly report\r\n" +
	"Message-ID: <1@example.org>\r\n" +
	"\r\n" +
	"Hello,\r\n" +
	"..signature\r\n" +
	"bye\r\n"

// unstuff reverses dot-stuffing (RFC 5321 section 4.5.2).
func unstuff(wire []byte) []byte {
	var out bytes.Buffer
	for line := range bytes.Lines(wire) {
		out.Write(bytes.TrimPrefix(line, []byte(".")))
	}
	return out.Bytes()
}

type dsnParts struct {
	top      message.Header
	params   map[string]string
	parts    []*message.Entity
	bodies   [][]byte
	perMsg   textproto.MIMEHeader
	perRcpts []textproto.MIMEHeader
}

// parseDSN parses a BuildDSN result back with go-message.
func parseDSN(t *testing.T, wire []byte) dsnParts {
	t.Helper()
	if bytes.HasSuffix(wire, []byte(".\r\n")) && !bytes.HasSuffix(wire, []byte("--\r\n")) {
		t.Errorf("DSN ends with a terminating dot; BuildDSN must leave it out")
	}
	for line := range bytes.Lines(wire) {
		if !bytes.HasSuffix(line, []byte("\r\n")) || bytes.Count(line, []byte("\n")) != 1 || bytes.Count(line, []byte("\r")) != 1 {
			t.Fatalf("DSN line %q does not end in CRLF alone", line)
		}
		if bytes.HasPrefix(line, []byte(".")) && !bytes.HasPrefix(line, []byte("..")) {
			t.Fatalf("DSN line %q starts with an unstuffed dot", line)
		}
	}

	e, err := message.Read(bytes.NewReader(unstuff(wire)))
	if err != nil {
		t.Fatalf("parsing DSN: %v", err)
	}
	var d dsnParts
	d.top = e.Header
	var mediaType string
	mediaType, d.params, err = e.Header.ContentType()
	if err != nil || mediaType != "multipart/report" {
		t.Fatalf("DSN Content-Type = %q (%v), want multipart/report", mediaType, err)
	}
	mr := e.MultipartReader()
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading DSN part %d: %v", len(d.parts), err)
		}
		body, err := io.ReadAll(p.Body)
		if err != nil {
			t.Fatalf("reading DSN part %d body: %v", len(d.parts), err)
		}
		d.parts = append(d.parts, p)
		d.bodies = append(d.bodies, body)
	}
	if len(d.parts) < 2 {
		t.Fatalf("DSN has %d parts, want at least 2", len(d.parts))
	}

	// The delivery-status body is a group of per-message fields and one
	// group per recipient (RFC 3464 section 2.1).
	tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(d.bodies[1])))
	d.perMsg, err = tr.ReadMIMEHeader()
	if err != nil {
		t.Fatalf("reading per-message fields: %v", err)
	}
	for {
		h, err := tr.ReadMIMEHeader()
		if len(h) > 0 {
			d.perRcpts = append(d.perRcpts, h)
		}
		if err != nil {
			break
		}
	}
	return d
}

func partType(t *testing.T, p *message.Entity) string {
	t.Helper()
	mt, _, err := p.Header.ContentType()
	if err != nil {
		t.Fatalf("part Content-Type: %v", err)
	}
	return mt
}

func testDSNParams() DSNParams {
	return DSNParams{
		ReportingMTA: "relay.example.net",
		To:           "sender@example.org",
		EnvID:        "QQ314159",
		Arrival:      time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC),
		Date:         time.Date(2026, 12, 9, 20, 0, 0, 0, time.UTC),
		Failed: []FailedRcpt{
			{
				Addr:       "a@example.com",
				ORcpt:      "rfc822;A@example.com",
				Action:     "failed",
				Status:     "5.1.1",
				RemoteMTA:  "mx.example.com",
				Diagnostic: "550 5.1.1 <a@example.com>: Recipient address rejected: User unknown",
			},
			{
				Addr:       "b@example.com",
				Action:     "failed",
				RemoteMTA:  "mx.example.com",
				Diagnostic: "552 5.2.2 mailbox full\r\nBcc: injected@example.net",
			},
		},
		Original:   strings.NewReader(originalWire),
		ReturnFull: true,
	}
}

func TestBuildDSNStructure(t *testing.T) {
	wire := BuildDSN(testDSNParams())
	d := parseDSN(t, wire)

	if got := d.params["report-type"]; got != "delivery-status" {
		t.Errorf("report-type = %q, want delivery-status", got)
	}
	for field, want := range map[string]string{
		"From":           "Mail Delivery System <MAILER-DAEMON@relay.example.net>",
		"To":             "<sender@example.org>",
		"Auto-Submitted": "auto-replied",
		"MIME-Version":   "1.0",
		"Date":           "Wed, 09 Dec 2026 20:00:00 +0000",
	} {
		if got := d.top.Get(field); got != want {
			t.Errorf("header %s = %q, want %q", field, got, want)
		}
	}
	if d.top.Get("Bcc") != "" || bytes.Contains(wire, []byte("\r\nBcc:")) {
		t.Errorf("diagnostic text injected a header line:\n%s", wire)
	}

	if len(d.parts) != 3 {
		t.Fatalf("DSN has %d parts, want 3", len(d.parts))
	}
	for i, want := range []string{"text/plain", "message/delivery-status", "message/rfc822"} {
		if got := partType(t, d.parts[i]); got != want {
			t.Errorf("part %d type = %q, want %q", i, got, want)
		}
	}
	if !bytes.Contains(d.bodies[0], []byte("<a@example.com>")) {
		t.Errorf("human-readable part does not name the recipient:\n%s", d.bodies[0])
	}

	// Per-message fields (RFC 3464 section 2.2).
	for field, want := range map[string]string{
		"Reporting-Mta":        "dns; relay.example.net",
		"Original-Envelope-Id": "QQ314159",
		"Arrival-Date":         "Fri, 04 Dec 2026 20:00:00 +0000",
	} {
		if got := d.perMsg.Get(field); got != want {
			t.Errorf("per-message %s = %q, want %q", field, got, want)
		}
	}

	// Per-recipient fields (RFC 3464 section 2.3).
	if len(d.perRcpts) != 2 {
		t.Fatalf("got %d per-recipient groups, want 2", len(d.perRcpts))
	}
	wantRcpts := []map[string]string{
		{
			"Original-Recipient": "rfc822; A@example.com",
			"Final-Recipient":    "rfc822; a@example.com",
			"Action":             "failed",
			"Status":             "5.1.1",
			"Remote-Mta":         "dns; mx.example.com",
			"Diagnostic-Code":    "smtp; 550 5.1.1 <a@example.com>: Recipient address rejected: User unknown",
		},
		{
			"Original-Recipient": "",
			"Final-Recipient":    "rfc822; b@example.com",
			"Action":             "failed",
			"Status":             "5.2.2", // taken from the diagnostic
			"Diagnostic-Code":    "smtp; 552 5.2.2 mailbox full Bcc: injected@example.net",
		},
	}
	for i, want := range wantRcpts {
		for field, v := range want {
			// Folding leaves single spaces where lines were joined.
			got := strings.Join(strings.Fields(d.perRcpts[i].Get(field)), " ")
			if got != v {
				t.Errorf("recipient %d %s = %q, want %q", i, field, got, v)
			}
		}
	}

	// The original comes back whole, and its stuffed line stays stuffed
	// in wire form.
	if got, want := string(d.bodies[2]), string(unstuff([]byte(originalWire))); got != want {
		t.Errorf("returned original:\n got %q\nwant %q", got, want)
	}
	if !bytes.Contains(wire, []byte("\r\n..signature\r\n")) {
		t.Errorf("wire form lost the dot-stuffing of the original")
	}
}

func TestBuildDSNHeadersOnly(t *testing.T) {
	p := testDSNParams()
	p.ReturnFull = false
	d := parseDSN(t, BuildDSN(p))
	if len(d.parts) != 3 {
		t.Fatalf("DSN has %d parts, want 3", len(d.parts))
	}
	if got := partType(t, d.parts[2]); got != "text/rfc822-headers" {
		t.Errorf("part 3 type = %q, want text/rfc822-headers", got)
	}
	body := string(d.bodies[2])
	if !strings.Contains(body, "Subject: quarterly report") || strings.Contains(body, "Hello") {
		t.Errorf("headers-only part = %q, want the header without the body", body)
	}
}

func TestBuildDSNVariants(t *testing.T) {
	t.Run("delayed", func(t *testing.T) {
		p := testDSNParams()
		p.Failed = []FailedRcpt{{Addr: "a@example.com", Action: "delayed", Diagnostic: "451 4.7.1 greylisted"}}
		d := parseDSN(t, BuildDSN(p))
		if got := d.top.Get("Subject"); !strings.HasPrefix(got, "Delayed Mail") {
			t.Errorf("Subject = %q, want a delay notice", got)
		}
		if got := d.perRcpts[0].Get("Status"); got != "4.7.1" {
			t.Errorf("Status = %q, want 4.7.1", got)
		}
	})

	t.Run("no original, no diagnostic", func(t *testing.T) {
		p := testDSNParams()
		p.Original = nil
		p.EnvID = ""
		p.Arrival = time.Time{}
		p.Failed = []FailedRcpt{{Addr: "a@example.com"}}
		d := parseDSN(t, BuildDSN(p))
		if len(d.parts) != 2 {
			t.Errorf("DSN has %d parts, want 2", len(d.parts))
		}
		if got := d.perRcpts[0].Get("Status"); got != "5.0.0" {
			t.Errorf("Status = %q, want 5.0.0", got)
		}
		if got := d.perRcpts[0].Get("Action"); got != "failed" {
			t.Errorf("Action = %q, want failed", got)
		}
		if d.perMsg.Get("Original-Envelope-Id") != "" || d.perMsg.Get("Arrival-Date") != "" {
			t.Errorf("per-message fields %v include empty optional fields", d.perMsg)
		}
	})

	t.Run("8-bit original and dotted text", func(t *testing.T) {
		p := testDSNParams()
		p.Original = strings.NewReader("Subject: caf\xc3\xa9\r\n\r\nno final line end")
		p.Failed[0].Diagnostic = ".leading dot 550 rejected"
		wire := BuildDSN(p)
		d := parseDSN(t, wire)
		if got := d.parts[2].Header.Get("Content-Transfer-Encoding"); got != "8bit" {
			t.Errorf("8-bit original part Content-Transfer-Encoding = %q, want 8bit", got)
		}
		if !strings.HasSuffix(string(d.bodies[2]), "no final line end\r\n") {
			t.Errorf("original part = %q, want it closed with CRLF", d.bodies[2])
		}
	})
}

func TestBuildDSNFoldsLongFields(t *testing.T) {
	p := testDSNParams()
	p.Failed[0].Diagnostic = "550 5.7.1 " + strings.Repeat("policy ", 60)
	wire := BuildDSN(p)
	for line := range bytes.Lines(wire) {
		if len(line) > maxHeaderLine+2 && bytes.Contains(line, []byte("policy")) {
			t.Errorf("line of %d octets not folded: %q", len(line), line)
		}
	}
	d := parseDSN(t, wire)
	got := strings.Join(strings.Fields(d.perRcpts[0].Get("Diagnostic-Code")), " ")
	if want := "smtp; 550 5.7.1 " + strings.TrimSpace(strings.Repeat("policy ", 60)); got != want {
		t.Errorf("unfolded Diagnostic-Code = %q, want %q", got, want)
	}
}
