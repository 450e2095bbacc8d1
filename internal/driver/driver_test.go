package driver

import (
	"context"
	"testing"
)

func TestExitIsRecordedOnceAndDeliveredToEveryWaiter(t *testing.T) {
	e := NewExit()
	early := e.Deliver(context.Background(), nil)
	if e.Exited() {
		t.Fatal("exited before Record")
	}
	e.Record(func() ExitResult { return ExitResult{ExitCode: 3} })
	e.Record(func() ExitResult { t.Fatal("second Record computed a result"); return ExitResult{} })
	if !e.Exited() || e.Result().ExitCode != 3 {
		t.Fatalf("after Record: exited %v, result %+v", e.Exited(), e.Result())
	}
	for i, ch := range []<-chan ExitResult{early, e.Deliver(context.Background(), nil)} {
		if r, ok := <-ch; !ok || r.ExitCode != 3 {
			t.Errorf("waiter %d got %+v, %v", i, r, ok)
		}
		if _, ok := <-ch; ok {
			t.Errorf("waiter %d: channel not closed after the result", i)
		}
	}
}

func TestExitDeliveryEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := NewExit().Deliver(ctx, nil)
	cancel()
	if r, ok := <-ch; ok {
		t.Fatalf("got %+v after the context ended, want a closed channel", r)
	}
}
