package spool

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// fillNonZero sets every field reachable from v to a distinct non-zero value,
// so a field the encoder omits comes back zero and fails the comparison.
func fillNonZero(t *testing.T, v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.String:
		v.SetString(strings.Repeat("x", *n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(int64(*n) * 1001)
	case reflect.Uint8:
		v.SetUint(uint64(*n%3 + 1))
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range v.Len() {
			fillNonZero(t, v.Index(i), n)
		}
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Unix(1700000000+int64(*n), int64(*n)).UTC()))
			return
		}
		for i := range v.NumField() {
			fillNonZero(t, v.Field(i), n)
		}
	default:
		t.Fatalf("field of kind %s is not covered by this test; teach fillNonZero and encodeEntry about it", v.Kind())
	}
}

// TestEntryCoversEnvelope round-trips an envelope with every field set, so
// a field added to Envelope or Recipient without encoder support fails here.
func TestEntryCoversEnvelope(t *testing.T) {
	var env Envelope
	n := 0
	fillNonZero(t, reflect.ValueOf(&env).Elem(), &n)
	exts := []extent{{Seg: 1, Gen: 2, Seq: 0, Off: 24, Len: 100}, {Seg: 9, Gen: 1 << 31, Seq: 1, Off: 1 << 40, Len: 7}}
	env.Size = 107

	e, err := decodeEntry(encodeEntry(&env, exts))
	if err != nil {
		t.Fatalf("decodeEntry(encodeEntry(%+v)) = %v", env, err)
	}
	if !reflect.DeepEqual(e.Env, env) {
		t.Errorf("envelope round trip:\ngot  %+v\nwant %+v", e.Env, env)
	}
	if !reflect.DeepEqual(e.Extents, exts) {
		t.Errorf("extents round trip: got %+v, want %+v", e.Extents, exts)
	}
}

func TestDecodeEntryErrors(t *testing.T) {
	good := encodeEntry(&Envelope{ID: "x", Size: 5}, []extent{{Seg: 1, Gen: 1, Len: 5}})
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"truncated", good[:len(good)-1], "truncated"},
		{"trailing", append(append([]byte(nil), good...), 0), "trailing"},
		{"version", append([]byte{9}, good[1:]...), "version"},
		{"huge count", []byte{entryVersion, 0xff, 0xff, 0x03}, "count"},
		{"no id", encodeEntry(&Envelope{}, nil), "no message id"},
		{"size", encodeEntry(&Envelope{ID: "x", Size: 6}, []extent{{Len: 5}}), "envelope size"},
		{"offset", encodeEntry(&Envelope{ID: "x", Size: 5}, []extent{{Off: -1, Len: 5}}), "negative offset"},
	}
	for _, tt := range tests {
		_, err := decodeEntry(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("decodeEntry(%s %x) = %v, want an error containing %q", tt.name, tt.in, err, tt.want)
		}
	}
}

func BenchmarkEntry(b *testing.B) {
	env := testEnvelope("a@example.com", "b@example.net")
	env.ID = "mx1-tpjfmb-1"
	env.ClientAddr = "192.0.2.1:5555"
	env.Helo = "client.example.org"
	env.Size = 20
	exts := []extent{{Seg: 3, Gen: 2, Off: 4096, Len: 20}}
	b.Run("op=encode", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			encodeEntry(env, exts)
		}
	})
	v := encodeEntry(env, exts)
	b.Run("op=decode", func(b *testing.B) {
		b.SetBytes(int64(len(v)))
		b.ReportAllocs()
		for range b.N {
			if _, err := decodeEntry(v); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestSanitizeHostID(t *testing.T) {
	tests := []struct{ in, want string }{
		{"mx1", "mx1"},
		{"mx1.example.com", "mx1examplecom"},
		{"MX_2", "MX_2"},
		{"a-b/c d", "abcd"},
		{"", "smta"},
		{"---", "smta"},
		{"héllo", "hllo"},
	}
	for _, tt := range tests {
		if got := sanitizeHostID(tt.in); got != tt.want {
			t.Errorf("sanitizeHostID(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFormatID(t *testing.T) {
	tests := []struct {
		host  string
		epoch int64
		n     uint64
		want  string
	}{
		{"mx1", 1700000000, 1, "mx1-s44we8-1"},
		{"mx1", 1700000000, 36, "mx1-s44we8-10"},
		{"h", 0, 0, "h-0-0"},
	}
	for _, tt := range tests {
		if got := formatID(tt.host, tt.epoch, tt.n); got != tt.want {
			t.Errorf("formatID(%q, %d, %d) = %q, want %q", tt.host, tt.epoch, tt.n, got, tt.want)
		}
	}
}
