package mvcc

import (
	"path/filepath"
	"testing"
)

func TestSmoke(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := s.Write()
	w.Put([]byte("a"), []byte("1"), 0)
	w.Put([]byte("b"), []byte("2"), 0)
	if err := w.End(); err != nil {
		t.Fatal(err)
	}
	w = s.Write()
	w.Put([]byte("a"), []byte("3"), 0)
	w.End()
	r := s.Read()
	res, err := r.Range([]byte("a"), []byte{0}, RangeOptions{})
	r.End()
	if err != nil || len(res.KVs) != 2 || res.Rev != 3 || res.KVs[0].Version != 2 {
		t.Fatalf("%v %+v", err, res)
	}
	s.Close()
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r = s.Read()
	res, err = r.Range([]byte("a"), nil, RangeOptions{Rev: 2})
	r.End()
	if err != nil || string(res.KVs[0].Value) != "1" || res.Rev != 3 {
		t.Fatalf("%v %+v", err, res)
	}
}
