// A small program using the SDK, for the tests (test/sdk/go.test.ts) and as an example:
//
//	example request '{"credential":"k","url":"https://api.example.com/v1/models",...}'
//	example status
//	example gateway CREDENTIAL
//
// The server and token come from TRUST_PROTOCOL_SERVER and TRUST_PROTOCOL_TOKEN. On a refusal it
// prints `error STATUS CODE: MESSAGE` and exits 1.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	trustprotocol "trust-protocol/sdk/go"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		var e *trustprotocol.Error
		if errors.As(err, &e) {
			fmt.Printf("error %d %s: %s\n", e.Status, e.Code, e.Message)
		} else {
			fmt.Printf("error: %v\n", err)
		}
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: example request TEMPLATE | status | gateway CREDENTIAL")
	}
	tp, err := trustprotocol.New(trustprotocol.Options{})
	if err != nil {
		return err
	}
	switch {
	case args[0] == "request" && len(args) == 2:
		var t trustprotocol.Template
		if err := json.Unmarshal([]byte(args[1]), &t); err != nil {
			return err
		}
		res, err := tp.Request(context.Background(), t)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		fmt.Printf("status %d\n", res.StatusCode)
		_, err = io.Copy(os.Stdout, res.Body)
		return err
	case args[0] == "status":
		h, err := tp.Status(context.Background())
		if err != nil {
			return err
		}
		fmt.Printf("status %s version %s expires %s\n", h.Status, h.Version, h.ExpiresAt)
		return nil
	case args[0] == "gateway" && len(args) == 2:
		u, err := tp.GatewayURL(args[1])
		if err != nil {
			return err
		}
		fmt.Println(u)
		return nil
	}
	return errors.New("usage: example request TEMPLATE | status | gateway CREDENTIAL")
}
