package caddypush

import (
	"sync"
	"time"
)

// ticker runs a function every interval in one goroutine, between start
// and stop; both stores run their sweeps on one.
type ticker struct {
	mu   sync.Mutex
	stop chan struct{}
	done chan struct{}
}

// start runs fn every interval unless it is running already.
func (tk *ticker) start(every time.Duration, fn func()) {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	if tk.stop != nil {
		return
	}
	stop, done := make(chan struct{}), make(chan struct{})
	tk.stop, tk.done = stop, done
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				fn()
			}
		}
	}()
}

// halt stops the goroutine and waits for it to end.
func (tk *ticker) halt() {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	if tk.stop == nil {
		return
	}
	close(tk.stop)
	<-tk.done
	tk.stop, tk.done = nil, nil
}
