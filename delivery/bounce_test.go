package delivery

import "testing"

func TestBounceCategory(t *testing.T) {
	tests := []struct {
		r    Result
		want string
	}{
		// Success is no bounce.
		{Result{250, "2.0.0", "ok"}, ""},

		// Decisive text wins over a generic enhanced code.
		{Result{550, "5.7.1", "Service unavailable; client host blocked using zen.spamhaus.org"}, CategorySpamRelated},
		{Result{554, "5.7.1", "Message rejected as spam by content filter"}, CategorySpamRelated},
		{Result{550, "5.7.1", "IP on our blocklist"}, CategorySpamRelated},
		{Result{554, "5.6.0", "Virus found: Eicar-Test-Signature"}, CategoryVirusRelated},
		{Result{550, "5.7.1", "Relay access denied"}, CategoryRelayingIssues},
		{Result{554, "5.7.1", "we do not relay for this domain"}, CategoryRelayingIssues},

		// Specific enhanced codes (RFC 3463, RFC 7372, RFC 7505).
		{Result{550, "5.1.1", "<a@example.com>: Recipient address rejected"}, CategoryBadMailbox},
		{Result{550, "5.1.2", "bad destination system"}, CategoryBadDomain},
		{Result{556, "5.1.10", "recipient domain has null MX"}, CategoryBadDomain},
		{Result{550, "5.1.6", "mailbox has moved"}, CategoryInactiveMailbox},
		{Result{553, "5.1.7", "bad sender address syntax"}, CategoryInvalidSender},
		{Result{550, "5.2.1", "The email account that you tried to reach is disabled"}, CategoryInactiveMailbox},
		{Result{552, "5.2.2", "mailbox full"}, CategoryQuotaIssues},
		{Result{452, "4.2.2", "over quota"}, CategoryQuotaIssues},
		{Result{552, "5.3.4", "message too big"}, CategoryContentRelated},
		{Result{421, "4.4.1", "no answer"}, CategoryNoAnswerFromHost},
		{Result{421, "4.4.2", "connection failed: read: connection reset by peer"}, CategoryBadConnection},
		{Result{550, "5.4.4", "unable to route"}, CategoryBadDomain},
		{Result{554, "5.4.6", "mail loops back to myself"}, CategoryRoutingErrors},
		{Result{554, "5.4.7", "delivery time expired"}, CategoryMessageExpired},
		{Result{550, "5.3.5", "system incorrectly configured"}, CategoryBadConfiguration},
		{Result{550, "5.7.13", "user account disabled"}, CategoryInactiveMailbox},
		{Result{550, "5.7.27", "sender address has null MX"}, CategoryInvalidSender},

		// Hint text under generic codes.
		{Result{550, "5.0.0", "User unknown in virtual mailbox table"}, CategoryBadMailbox},
		{Result{550, "", "No such user here"}, CategoryBadMailbox},
		{Result{550, "5.0.0", "domain does not exist"}, CategoryBadDomain},
		{Result{550, "", "mailbox does not exist"}, CategoryBadMailbox},
		{Result{550, "5.7.1", "Sender address rejected: not owned by user"}, CategoryInvalidSender},
		{Result{554, "", "account suspended"}, CategoryInactiveMailbox},
		{Result{552, "", "Requested mail action aborted: exceeded storage allocation"}, CategoryQuotaIssues},

		// Subject of the enhanced code when nothing more specific applies.
		{Result{550, "5.7.1", "Message rejected under local policy"}, CategoryPolicyRelated},
		{Result{550, "5.7.26", "DMARC validation failed"}, CategoryPolicyRelated},
		{Result{554, "5.6.1", "media not supported"}, CategoryContentRelated},
		{Result{501, "5.5.4", "invalid arguments"}, CategoryProtocolErrors},
		{Result{550, "5.1.0", "address rejected"}, CategoryBadMailbox},

		// Basic reply code last.
		{Result{553, "", "rejected"}, CategoryBadMailbox},
		{Result{502, "", "command not implemented"}, CategoryProtocolErrors},
		{Result{554, "", "transaction failed"}, CategoryOther},
		{Result{451, "4.0.0", "try again"}, CategoryOther},
		{Result{550, "9.9.9", "garbage enhanced code"}, CategoryBadMailbox},
		{Result{}, CategoryOther},
	}
	for _, tt := range tests {
		if got := BounceCategory(tt.r); got != tt.want {
			t.Errorf("BounceCategory(%q) = %q, want %q", tt.r.String(), got, tt.want)
		}
	}
}
