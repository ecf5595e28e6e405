// Command client is the seed's Ruby EventMachine client rewritten in Go: it
// publishes "Hello @ <time>" to a channel every 5 seconds and runs two
// listeners on the same channel (broadcast), each re-subscribing with the
// Last-Modified and Etag of the response it just got, so it receives every
// message once and in order.
//
//	go run ./examples/client -url http://127.0.0.1:8080 -channel pub
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"
)

func main() {
	base := flag.String("url", "http://127.0.0.1:8080", "server base URL (publisher at /publish, subscriber at /activity)")
	channel := flag.String("channel", "pub", "channel id")
	every := flag.Duration("every", 5*time.Second, "publish interval")
	count := flag.Int("n", 0, "stop after publishing this many messages and receiving them (0 = run until interrupted)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, *base, *channel, *every, *count); err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(1)
	}
}

// run publishes every `every` and listens with two subscribers until ctx
// ends, or until n messages were published and each listener received n.
func run(ctx context.Context, out io.Writer, base, channel string, every time.Duration, n int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pubURL := base + "/publish?id=" + url.QueryEscape(channel)
	subURL := base + "/activity?id=" + url.QueryEscape(channel)
	var mu sync.Mutex // keeps lines of concurrent goroutines apart
	say := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, format+"\n", a...)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for i := 1; i <= 2; i++ { // open two listeners (aka broadcast/pubsub distribution)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := listen(ctx, subURL, n, func(body string) { say("Listener %d received: %s", i, body) }); err != nil {
				errs <- err
			}
		}()
	}

	tick := time.NewTicker(every)
	defer tick.Stop()
	for published := 0; n == 0 || published < n; {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		now := time.Now()
		res, err := http.Post(pubURL, "", strings.NewReader(fmt.Sprintf("Hello @ %s", now.Format(time.RFC1123Z))))
		if err != nil {
			return fmt.Errorf("publishing: %w", err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		published++
		say("Published message @ %s\nResponse code: %d\nHeaders: %v\nBody: \n%s\n", now.Format(time.RFC1123Z), res.StatusCode, res.Header, body)
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// listen long-polls url, passing each message to got, and re-subscribes
// with the Last-Modified and Etag of each response so no message is missed
// or repeated. It returns after n messages (n > 0) or when ctx ends.
func listen(ctx context.Context, url string, n int, got func(string)) error {
	var lastModified, etag string
	for received := 0; n == 0 || received < n; {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if lastModified != "" {
			req.Header.Set("If-Modified-Since", lastModified)
			req.Header.Set("If-None-Match", etag)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("listening: %w", err)
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		switch {
		case err != nil:
			return fmt.Errorf("reading message: %w", err)
		case res.StatusCode == http.StatusOK:
			lastModified, etag = res.Header.Get("Last-Modified"), res.Header.Get("Etag")
			got(string(body))
			received++
		case res.StatusCode == http.StatusNotModified: // subscriber timeout: ask again
		default:
			return fmt.Errorf("listening: unexpected status %d", res.StatusCode)
		}
	}
	return nil
}
