package verify

import (
	"testing"
)

func TestParsePage(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		err  bool
		n    int
	}{
		{"ok", `{"events":[{"sequence":1,"producer":"p","producer_sequence":0,"data":"x"},{"sequence":2,"data":{"a":1}}],"count":2,"from":1,"to":2,"next":3,"earliest":0,"cursor":9}`, false, 2},
		{"empty", `{"events":[],"count":0,"next":5}`, false, 0},
		{"count mismatch", `{"events":[{"sequence":1}],"count":2,"next":2}`, true, 0},
		{"not increasing", `{"events":[{"sequence":2},{"sequence":2}],"count":2,"next":3}`, true, 0},
		{"not json", `<html>`, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParsePage([]byte(tc.body))
			if (err != nil) != tc.err {
				t.Fatalf("err %v, want error %v", err, tc.err)
			}
			if err == nil && len(p.Events) != tc.n {
				t.Fatalf("%d events, want %d", len(p.Events), tc.n)
			}
		})
	}
}

func TestReportOK(t *testing.T) {
	for _, tc := range []struct {
		r  Report
		ok bool
	}{
		{Report{Acknowledged: 5, Found: 5}, true},
		{Report{Acknowledged: 5, Found: 4, Lost: 1}, false},
		{Report{Duplicated: 1}, false},
		{Report{Mismatched: 1}, false},
		{Report{Misplaced: 1}, false},
		{Report{StoredRefused: 1}, false},
		{Report{StoredUnknown: 3}, true},
		{Report{Unidentified: 1}, false},
		{Report{Unidentified: 1, unanswered: 1}, true},
	} {
		if tc.r.OK() != tc.ok {
			t.Errorf("%+v: OK %v, want %v", tc.r, tc.r.OK(), tc.ok)
		}
	}
	r := Report{Acknowledged: 3, Found: 3}
	if got, want := r.String(), "acknowledged 3, lost 0, duplicated 0"; got != want {
		t.Errorf("String %q, want %q", got, want)
	}
}

// FuzzParsePage: any accepted page is internally consistent.
func FuzzParsePage(f *testing.F) {
	f.Add([]byte(`{"events":[{"sequence":1,"producer":"p","producer_sequence":0,"data":"x"}],"count":1,"next":2}`))
	f.Add([]byte(`{"events":[],"count":0}`))
	f.Add([]byte(`{"events":[{"sequence":3},{"sequence":1}],"count":2}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParsePage(body)
		if err != nil {
			return
		}
		if p.Count != len(p.Events) {
			t.Fatalf("count %d, %d events", p.Count, len(p.Events))
		}
		for i := 1; i < len(p.Events); i++ {
			if p.Events[i].Sequence <= p.Events[i-1].Sequence {
				t.Fatal("not increasing")
			}
		}
	})
}
