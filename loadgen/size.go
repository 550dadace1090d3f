package loadgen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// SizeSpec is the message size distribution, in octets of the message as
// sent (headers and body, CRLF line endings). A fixed size has Min == Max.
type SizeSpec struct {
	Min int
	Max int
}

// minMessageSize is the smallest size the generator can honor: the
// headers alone take about 300 octets.
const minMessageSize = 512

// maxMessageSize bounds generated messages to 64 MiB, far above what an
// SMTP relay benchmark needs and small enough to keep in memory.
const maxMessageSize = 64 << 20

// ParseSize parses a size such as "10240", "10k", "1m" or a range such as
// "2k-100k". Suffixes k and m are binary (1k = 1024 octets).
func ParseSize(s string) (SizeSpec, error) {
	lo, hi, isRange := strings.Cut(strings.TrimSpace(s), "-")
	minSize, err := parseOctets(lo)
	if err != nil {
		return SizeSpec{}, fmt.Errorf("loadgen: invalid size %q: %w", s, err)
	}
	maxSize := minSize
	if isRange {
		maxSize, err = parseOctets(hi)
		if err != nil {
			return SizeSpec{}, fmt.Errorf("loadgen: invalid size %q: %w", s, err)
		}
	}
	spec := SizeSpec{Min: minSize, Max: maxSize}
	if err := spec.validate(); err != nil {
		return SizeSpec{}, fmt.Errorf("loadgen: invalid size %q: %w", s, err)
	}
	return spec, nil
}

func (s SizeSpec) validate() error {
	switch {
	case s.Min < minMessageSize:
		return fmt.Errorf("minimum %d is below %d octets", s.Min, minMessageSize)
	case s.Max > maxMessageSize:
		return fmt.Errorf("maximum %d is above %d octets", s.Max, maxMessageSize)
	case s.Max < s.Min:
		return fmt.Errorf("maximum %d is below minimum %d", s.Max, s.Min)
	}
	return nil
}

func parseOctets(s string) (int, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	multiplier := 1
	switch {
	case strings.HasSuffix(s, "k"):
		multiplier, s = 1<<10, strings.TrimSuffix(s, "k")
	case strings.HasSuffix(s, "m"):
		multiplier, s = 1<<20, strings.TrimSuffix(s, "m")
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number of octets (examples: 10240, 10k, 2k-100k)", s)
	}
	if n < 0 || n > maxMessageSize/multiplier {
		return 0, fmt.Errorf("%d%s is out of range", n, s)
	}
	return n * multiplier, nil
}

// Draw returns a size from the distribution. A range is log-uniform, so
// small messages are more frequent than large ones, as in real mail
// streams, and each factor of two between Min and Max is equally likely.
func (s SizeSpec) Draw(r *rand.Rand) int {
	if s.Max <= s.Min {
		return s.Min
	}
	lo, hi := math.Log(float64(s.Min)), math.Log(float64(s.Max))
	size := int(math.Exp(lo + r.Float64()*(hi-lo)))
	return min(max(size, s.Min), s.Max)
}

// String formats s the way benchmark names use it: "10240" or "2048-102400".
func (s SizeSpec) String() string {
	if s.Max <= s.Min {
		return strconv.Itoa(s.Min)
	}
	return strconv.Itoa(s.Min) + "-" + strconv.Itoa(s.Max)
}
