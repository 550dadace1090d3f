package smtp

import (
	"strings"
	"testing"
)

func TestParseMailParams(t *testing.T) {
	tests := []struct {
		in   string
		want MailParams
		id   replyID
	}{
		{in: "", want: MailParams{}},
		{in: " SIZE=1000", want: MailParams{Size: 1000}},
		{in: " size=0", want: MailParams{Size: 0}},
		{in: " SIZE=99999999999999999999", want: MailParams{Size: 1<<63 - 1}},
		{in: " SIZE=999999999999999999999", id: replyBadParameter},
		{in: " SIZE=", id: replyBadParameter},
		{in: " SIZE", id: replyBadParameter},
		{in: " SIZE=-1", id: replyBadParameter},
		{in: " BODY=7bit", want: MailParams{Body: "7BIT"}},
		{in: " body=8BITMIME", want: MailParams{Body: "8BITMIME"}},
		{in: " BODY=BINARYMIME", id: replyBadParameter},
		{in: " SMTPUTF8", want: MailParams{SMTPUTF8: true}},
		{in: " smtputf8=", id: replyBadParameter},
		{in: " RET=full", want: MailParams{Ret: "FULL"}},
		{in: " RET=HDRS", want: MailParams{Ret: "HDRS"}},
		{in: " RET=NONE", id: replyBadParameter},
		{in: " ENVID=QQ314159", want: MailParams{EnvID: "QQ314159"}},
		{in: " ENVID=a+20b+2B", want: MailParams{EnvID: "a b+"}},
		{in: " ENVID=a+2", id: replyBadParameter},
		{in: " ENVID=a+g0", id: replyBadParameter},
		{in: " ENVID=" + strings.Repeat("x", 100), want: MailParams{EnvID: strings.Repeat("x", 100)}},
		{in: " ENVID=" + strings.Repeat("x", 101), id: replyBadParameter},
		{in: "  SIZE=1   BODY=7BIT  ", want: MailParams{Size: 1, Body: "7BIT"}},
		{in: " SIZE=1 SIZE=2", id: replyDuplicateParameter},
		{in: " FOO=bar", id: replyUnknownParameter},
		{in: " AUTH=<>", id: replyUnknownParameter},
		{in: " -BAD=1", id: replyBadParameter},
		{in: " SIZE=1=2", id: replyBadParameter},
		{in: " SIZE=\x01", id: replyBadParameter},
	}
	s := NewSession(&Config{})
	s.ehlo = true
	for _, tt := range tests {
		var got MailParams
		id := s.parseMailParams([]byte(tt.in), &got)
		if id != tt.id {
			t.Errorf("parseMailParams(%q) reply = %v, want %v", tt.in, replyTable[id].Reply, replyTable[tt.id].Reply)
			continue
		}
		if id == replyNone && got != tt.want {
			t.Errorf("parseMailParams(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseMailParamsAfterHelo(t *testing.T) {
	s := NewSession(&Config{})
	var p MailParams
	if id := s.parseMailParams([]byte(" SIZE=10"), &p); id != replyUnknownParameter {
		t.Errorf("parseMailParams after HELO = %v, want %v", replyTable[id].Reply, replyTable[replyUnknownParameter].Reply)
	}
	if id := s.parseMailParams(nil, &p); id != replyNone {
		t.Errorf("parseMailParams(no parameters) after HELO = %v, want none", replyTable[id].Reply)
	}
}

func TestParseRcptParams(t *testing.T) {
	tests := []struct {
		in   string
		want RcptParams
		id   replyID
	}{
		{in: "", want: RcptParams{}},
		{in: " NOTIFY=NEVER", want: RcptParams{Notify: "NEVER"}},
		{in: " notify=failure,success", want: RcptParams{Notify: "FAILURE,SUCCESS"}},
		{in: " NOTIFY=SUCCESS,FAILURE,DELAY", want: RcptParams{Notify: "SUCCESS,FAILURE,DELAY"}},
		{in: " NOTIFY=NEVER,DELAY", id: replyBadParameter},
		{in: " NOTIFY=DELAY,", id: replyBadParameter},
		{in: " NOTIFY=,DELAY", id: replyBadParameter},
		{in: " NOTIFY=SOMETIMES", id: replyBadParameter},
		{in: " NOTIFY=FAILURE,FAILURE", id: replyBadParameter},
		{in: " ORCPT=rfc822;user@example.com", want: RcptParams{ORcpt: "rfc822;user@example.com"}},
		{in: " ORCPT=rfc822;user+2Btag@example.com", want: RcptParams{ORcpt: "rfc822;user+tag@example.com"}},
		{in: " ORCPT=utf-8;user@example.com", want: RcptParams{ORcpt: "utf-8;user@example.com"}},
		{in: " ORCPT=rfc822", id: replyBadParameter},
		{in: " ORCPT=;user@example.com", id: replyBadParameter},
		{in: " ORCPT=rfc822;", id: replyBadParameter},
		{in: " ORCPT=rfc(822);x", id: replyBadParameter},
		{in: " ORCPT=rfc822;" + strings.Repeat("x", 493), want: RcptParams{ORcpt: "rfc822;" + strings.Repeat("x", 493)}},
		{in: " ORCPT=rfc822;" + strings.Repeat("x", 494), id: replyBadParameter},
		{in: " NOTIFY=NEVER NOTIFY=NEVER", id: replyDuplicateParameter},
		{in: " SIZE=10", id: replyUnknownParameter},
	}
	s := NewSession(&Config{})
	s.ehlo = true
	for _, tt := range tests {
		var got RcptParams
		id := s.parseRcptParams([]byte(tt.in), &got)
		if id != tt.id {
			t.Errorf("parseRcptParams(%q) reply = %v, want %v", tt.in, replyTable[id].Reply, replyTable[tt.id].Reply)
			continue
		}
		if id == replyNone && got != tt.want {
			t.Errorf("parseRcptParams(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestDecodeXtext(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"", "", true},
		{"plain", "plain", true},
		{"a+2Bb", "a+b", true},
		{"+3D", "=", true},
		{"+20+7e", " ~", true},
		{"+", "", false},
		{"+2", "", false},
		{"+GG", "", false},
		{"a=b", "", false},
		{"a b", "", false},
		{"\x7f", "", false},
	}
	for _, tt := range tests {
		got, ok := decodeXtext(nil, []byte(tt.in))
		if ok != tt.ok || (ok && string(got) != tt.want) {
			t.Errorf("decodeXtext(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
