package smtp_test

import (
	"fmt"
	"strings"

	"smta/smtp"
)

// A driver loop over input that is already in memory. A real driver reads
// from a socket when Feed returns EventNone and keeps the unconsumed tail.
func ExampleSession() {
	s := smtp.NewSession(&smtp.Config{Hostname: "mx.example"})
	s.Start()
	in := []byte("HELO client.example\r\nMAIL FROM:<a@client.example>\r\n" +
		"RCPT TO:<b@mx.example>\r\nDATA\r\nHello\r\n.\r\nQUIT\r\n")
	var body []byte
	for len(in) > 0 {
		n, ev := s.Feed(in)
		switch ev.Kind {
		case smtp.EventHelo, smtp.EventMail, smtp.EventRcpt, smtp.EventData:
			s.Accept()
		case smtp.EventBody:
			body = append(body, ev.Body...)
		case smtp.EventDataEnd:
			s.AcceptQueued("4F2A")
		}
		in = in[n:]
	}
	// Replies end in CRLF on the wire; print them one per line.
	fmt.Printf("body %q\n%s", body, strings.ReplaceAll(string(s.Output()), "\r\n", "\n"))
	// Output:
	// body "Hello\r\n"
	// 220 mx.example ESMTP smta
	// 250 mx.example
	// 250 2.1.0 Ok
	// 250 2.1.5 Ok
	// 354 End data with <CR><LF>.<CR><LF>
	// 250 2.0.0 Ok: queued as 4F2A
	// 221 2.0.0 Bye
}
