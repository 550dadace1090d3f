package acct

// CONTRACT (fixed; the daemon and queue are written against it).
//
//	l, err := acct.Open(acct.Options{Dir: logDir})
//	l.Log(&acct.Record{Type: acct.TypeDelivered, ...}) // never drops; may block briefly when the ring is full
//	l.Close()                                          // drains and syncs

// Record types, as in PowerMTA's accounting files.
const (
	TypeReceived  = "r"
	TypeDelivered = "d"
	TypeTransient = "t"
	TypeBounced   = "b"
	TypeExpired   = "e"
	TypeRejected  = "rj"
	TypeFeedback  = "f"
)

// Record is one accounting record. JSON field names follow PowerMTA's
// accounting fields so existing parsers read them; empty fields are omitted.
type Record struct {
	Type             string            `json:"type"`
	TimeLogged       string            `json:"timeLogged"`           // RFC 3339 with milliseconds; set by Log when empty
	TimeQueued       string            `json:"timeQueued,omitempty"` // RFC 3339
	Orig             string            `json:"orig"`
	Rcpt             string            `json:"rcpt,omitempty"`
	ORcpt            string            `json:"orcpt,omitempty"`
	DSNAction        string            `json:"dsnAction,omitempty"` // relayed, delivered, failed, delayed, expanded
	DSNStatus        string            `json:"dsnStatus,omitempty"` // e.g. "2.0.0 (success)"
	DSNDiag          string            `json:"dsnDiag,omitempty"`   // e.g. "smtp;250 2.0.0 ok"
	DSNMta           string            `json:"dsnMta,omitempty"`    // e.g. "mx.example.com (192.0.2.1)"
	BounceCat        string            `json:"bounceCat,omitempty"`
	SrcMta           string            `json:"srcMta,omitempty"` // "helo (ip)" of the client that injected the message
	DlvSourceIP      string            `json:"dlvSourceIp,omitempty"`
	DlvDestinationIP string            `json:"dlvDestinationIp,omitempty"`
	DlvSize          int64             `json:"dlvSize,omitempty"`
	VMTA             string            `json:"vmta,omitempty"`
	VMTAPool         string            `json:"vmtaPool,omitempty"`
	Queue            string            `json:"queue,omitempty"`
	NumAttempts      int               `json:"numAttempts,omitempty"`
	TLSProtocol      string            `json:"tlsProtocol,omitempty"`
	TLSCipher        string            `json:"tlsCipher,omitempty"`
	SessionID        string            `json:"sessionId,omitempty"`
	JobID            string            `json:"jobId,omitempty"`
	EnvID            string            `json:"envId,omitempty"`
	MsgID            string            `json:"msgId,omitempty"`
	Reply            string            `json:"reply,omitempty"` // rj: the reply sent to the client
	Meta             map[string]string `json:"meta,omitempty"`
}
