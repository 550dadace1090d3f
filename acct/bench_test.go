package acct

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
)

// benchRecord is a typical delivery record with TimeLogged set, so Log does
// not format a time. The benchmarks pass the same pointer many times; the
// writer only reads it.
func benchRecord() *Record {
	r := fullRecord()
	r.Meta = nil
	r.BounceCat, r.Reply = "", ""
	return r
}

// BenchmarkLog measures what Log costs the calling goroutines: b.N records
// split over N producers, while the writer drains them to a real file. The
// ring holds 2^20 records, so up to that many the producers measure their
// own cost rather than wait for the writer. Beyond it the figure includes
// backpressure.
func BenchmarkLog(b *testing.B) {
	for _, producers := range []int{1, 2, 4, 8} {
		b.Run(fmt.Sprintf("producers=%d", producers), func(b *testing.B) {
			l, err := Open(Options{Dir: b.TempDir(), RingSize: 1 << 20, Logger: discardLogger()})
			if err != nil {
				b.Fatal(err)
			}
			r := benchRecord()
			b.ReportAllocs()
			b.ResetTimer()

			var wg sync.WaitGroup
			for p := range producers {
				n := b.N / producers
				if p < b.N%producers {
					n++
				}
				wg.Go(func() {
					for range n {
						l.Log(r)
					}
				})
			}
			wg.Wait()

			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/record")
			if err := l.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkLogTimeLogged measures Log when it has to set TimeLogged, as it
// does for records from the daemon. Each iteration logs a fresh record, as
// callers do, so the record's own allocation is included.
func BenchmarkLogTimeLogged(b *testing.B) {
	l, err := Open(Options{Dir: b.TempDir(), RingSize: 1 << 20, Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	tmpl := benchRecord()
	tmpl.TimeLogged = ""
	b.ReportAllocs()
	for b.Loop() {
		r := *tmpl
		l.Log(&r)
	}
	b.StopTimer()
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkWriter measures end-to-end throughput: b.N records logged from
// one goroutine, encoded, written and fsynced by Close.
func BenchmarkWriter(b *testing.B) {
	for _, files := range []int{1, 3} {
		b.Run(fmt.Sprintf("files=%d", files), func(b *testing.B) {
			dir := b.TempDir()
			o := Options{Dir: dir, Logger: discardLogger()}
			for i := 1; i < files; i++ {
				o.Files = append(o.Files, FileOptions{Path: fmt.Sprintf("%s/extra%d.json", dir, i)})
			}
			l, err := Open(o)
			if err != nil {
				b.Fatal(err)
			}
			r := benchRecord()
			b.SetBytes(int64(len(appendRecord(nil, r))))
			b.ReportAllocs()
			b.ResetTimer()

			for range b.N {
				l.Log(r)
			}
			if err := l.Close(); err != nil {
				b.Fatal(err)
			}

			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkEncode compares appendRecord with encoding/json on one record.
func BenchmarkEncode(b *testing.B) {
	r := benchRecord()
	b.Run("encoder=append", func(b *testing.B) {
		buf := appendRecord(nil, r)
		b.SetBytes(int64(len(buf)))
		b.ReportAllocs()
		for b.Loop() {
			buf = appendRecord(buf[:0], r)
		}
	})
	b.Run("encoder=encoding_json", func(b *testing.B) {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.Encode(r)
		b.SetBytes(int64(buf.Len()))
		b.ReportAllocs()
		for b.Loop() {
			buf.Reset()
			enc.Encode(r)
		}
	})
}
