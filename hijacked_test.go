package caddypush

import (
	"sync"
	"testing"
	"time"
)

// TestExitWaitsWhileStreamsOpen: the exit waits for the streams on
// hijacked connections while others still open and end (the servers
// accept until the process goes); a sync.WaitGroup panics when a stream
// opens from zero during its Wait.
func TestExitWaitsWhileStreamsOpen(t *testing.T) {
	var c streamCount
	stop := make(chan struct{})
	var churn sync.WaitGroup
	for range 4 {
		churn.Add(1)
		go func() {
			defer churn.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c.Add()
				c.Done()
			}
		}()
	}
	for range 2000 {
		c.wait(time.Second)
	}
	close(stop)
	churn.Wait()

	c.Add()
	if c.wait(time.Millisecond) {
		t.Fatal("the wait ended with a stream open")
	}
	ended := make(chan bool)
	go func() { ended <- c.wait(10 * time.Second) }()
	c.Add() // another opens while the exit waits
	c.Done()
	c.Done()
	if !<-ended {
		t.Fatal("the wait did not end with the last stream")
	}
}
