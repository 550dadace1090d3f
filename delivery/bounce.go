package delivery

import "strings"

// Bounce categories as PowerMTA writes them in the bounceCat field of its
// accounting records, so existing reports and suppression rules keep
// working.
const (
	CategoryBadMailbox       = "bad-mailbox"
	CategoryBadDomain        = "bad-domain"
	CategoryInactiveMailbox  = "inactive-mailbox"
	CategoryQuotaIssues      = "quota-issues"
	CategoryPolicyRelated    = "policy-related"
	CategorySpamRelated      = "spam-related"
	CategoryMessageExpired   = "message-expired"
	CategoryNoAnswerFromHost = "no-answer-from-host"
	CategoryBadConnection    = "bad-connection"
	CategoryRoutingErrors    = "routing-errors"
	CategoryProtocolErrors   = "protocol-errors"
	CategoryRelayingIssues   = "relaying-issues"
	CategoryInvalidSender    = "invalid-sender"
	CategoryContentRelated   = "content-related"
	CategoryVirusRelated     = "virus-related"
	CategoryBadConfiguration = "bad-configuration"
	CategoryOther            = "other"
)

// textRule maps a lowercase substring of the reply text to a category.
type textRule struct {
	substr   string
	category string
}

// decisiveText is checked before the enhanced code, because servers report
// blocklist, virus and relay rejections under generic codes such as 5.7.1
// or 5.0.0, and the text is the only place that names the reason.
var decisiveText = []textRule{
	{"virus", CategoryVirusRelated},
	{"malware", CategoryVirusRelated},
	{"infected", CategoryVirusRelated},
	{"spam", CategorySpamRelated},
	{"blacklist", CategorySpamRelated},
	{"blocklist", CategorySpamRelated},
	{"blocked using", CategorySpamRelated},
	{"dnsbl", CategorySpamRelated},
	{"reputation", CategorySpamRelated},
	{"relay", CategoryRelayingIssues},
}

// enhancedDetail maps "subject.detail" of an RFC 3463 enhanced status code
// (RFC 7372 and RFC 7505 for the later details) to a category. Details with
// no specific meaning, such as x.7.1 or x.0.0, are missing on purpose, so
// hintText and the subject fallback get to decide.
var enhancedDetail = map[string]string{
	"1.1":  CategoryBadMailbox,       // bad destination mailbox address
	"1.2":  CategoryBadDomain,        // bad destination system address
	"1.3":  CategoryBadMailbox,       // bad destination mailbox address syntax
	"1.4":  CategoryBadMailbox,       // destination mailbox address ambiguous
	"1.6":  CategoryInactiveMailbox,  // destination mailbox has moved
	"1.7":  CategoryInvalidSender,    // bad sender's mailbox address syntax
	"1.8":  CategoryInvalidSender,    // bad sender's system address
	"1.10": CategoryBadDomain,        // recipient address has null MX
	"2.1":  CategoryInactiveMailbox,  // mailbox disabled
	"2.2":  CategoryQuotaIssues,      // mailbox full
	"2.3":  CategoryContentRelated,   // message length exceeds administrative limit
	"2.4":  CategoryRoutingErrors,    // mailing list expansion problem
	"3.1":  CategoryQuotaIssues,      // mail system full
	"3.4":  CategoryContentRelated,   // message too big for system
	"3.5":  CategoryBadConfiguration, // system incorrectly configured
	"4.1":  CategoryNoAnswerFromHost, // no answer from host
	"4.2":  CategoryBadConnection,    // bad connection
	"4.3":  CategoryRoutingErrors,    // directory server failure
	"4.4":  CategoryBadDomain,        // unable to route
	"4.6":  CategoryRoutingErrors,    // routing loop detected
	"4.7":  CategoryMessageExpired,   // delivery time expired
	"7.7":  CategoryContentRelated,   // message integrity failure
	"7.13": CategoryInactiveMailbox,  // user account disabled
	"7.17": CategoryInactiveMailbox,  // mailbox owner has changed
	"7.18": CategoryInactiveMailbox,  // domain owner has changed
	"7.27": CategoryInvalidSender,    // sender address has null MX
}

// hintText is checked after the enhanced code details, for servers that
// send none or only a generic one. Order matters: "domain does not exist"
// must match before "does not exist".
var hintText = []textRule{
	{"quota", CategoryQuotaIssues},
	{"mailbox full", CategoryQuotaIssues},
	{"mailbox is full", CategoryQuotaIssues},
	{"insufficient storage", CategoryQuotaIssues},
	{"disabled", CategoryInactiveMailbox},
	{"inactive", CategoryInactiveMailbox},
	{"deactivated", CategoryInactiveMailbox},
	{"suspended", CategoryInactiveMailbox},
	{"domain not found", CategoryBadDomain},
	{"host not found", CategoryBadDomain},
	{"no such domain", CategoryBadDomain},
	{"domain does not exist", CategoryBadDomain},
	{"unrouteable", CategoryBadDomain},
	{"user unknown", CategoryBadMailbox},
	{"unknown user", CategoryBadMailbox},
	{"no such user", CategoryBadMailbox},
	{"unknown recipient", CategoryBadMailbox},
	{"recipient not found", CategoryBadMailbox},
	{"invalid recipient", CategoryBadMailbox},
	{"mailbox unavailable", CategoryBadMailbox},
	{"mailbox not found", CategoryBadMailbox},
	{"does not exist", CategoryBadMailbox},
	{"sender", CategoryInvalidSender},
	{"expired", CategoryMessageExpired},
	{"timed out", CategoryNoAnswerFromHost},
	{"connection refused", CategoryBadConnection},
}

// enhancedSubject maps the subject of an enhanced code (RFC 3463 section
// 3) to a category when neither the detail nor the text decided.
var enhancedSubject = map[byte]string{
	'1': CategoryBadMailbox,
	'2': CategoryInactiveMailbox,
	'3': CategoryBadConfiguration,
	'4': CategoryRoutingErrors,
	'5': CategoryProtocolErrors,
	'6': CategoryContentRelated,
	'7': CategoryPolicyRelated,
}

// BounceCategory classifies a failed delivery into one of the PowerMTA
// bounce categories. It returns "" for a successful result. The rules run
// in order: decisive words in the text (virus, spam, relay), the specific
// enhanced status code, hint words in the text, the subject of the enhanced
// code, and last the basic reply code.
func BounceCategory(r Result) string {
	if r.OK() {
		return ""
	}
	text := strings.ToLower(r.Text)
	if c := matchText(decisiveText, text); c != "" {
		return c
	}

	enhanced := r.Enhanced
	if !validEnhanced(enhanced) {
		enhanced = ""
	}
	if enhanced != "" {
		if c, ok := enhancedDetail[enhanced[2:]]; ok {
			return c
		}
	}
	if c := matchText(hintText, text); c != "" {
		return c
	}
	if enhanced != "" && enhanced[2:] != "0.0" {
		if c, ok := enhancedSubject[enhanced[2]]; ok {
			return c
		}
	}

	switch r.Code {
	case 550, 551, 553:
		return CategoryBadMailbox
	case 452, 552:
		return CategoryQuotaIssues
	case 500, 501, 502, 503, 504:
		return CategoryProtocolErrors
	}
	return CategoryOther
}

func matchText(rules []textRule, text string) string {
	for _, rule := range rules {
		if strings.Contains(text, rule.substr) {
			return rule.category
		}
	}
	return ""
}
