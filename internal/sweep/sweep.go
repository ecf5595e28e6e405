// Package sweep runs a store's periodic housekeeping in one goroutine.
package sweep

import (
	"sync"
	"time"
)

// Ticker runs a function every interval in one goroutine, between Start
// and Stop. The zero value is ready to use.
type Ticker struct {
	mu   sync.Mutex
	stop chan struct{}
	done chan struct{}
}

// Start runs fn every interval unless it is running already.
func (tk *Ticker) Start(every time.Duration, fn func()) {
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

// Stop ends the goroutine and waits for it to end.
func (tk *Ticker) Stop() {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	if tk.stop == nil {
		return
	}
	close(tk.stop)
	<-tk.done
	tk.stop, tk.done = nil, nil
}
