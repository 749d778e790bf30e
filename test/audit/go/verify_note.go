// Verifies a signed note with Go's golang.org/x/mod/sumdb/note: an implementation independent of
// ours. Usage: verify_note VERIFIER_KEY NOTE_FILE. Prints the note text and exits 0 when
// note.Open accepts it, exits 1 (printing the error) when not.
package main

import (
	"fmt"
	"os"

	"golang.org/x/mod/sumdb/note"
)

func main() {
	v, err := note.NewVerifier(os.Args[1])
	if err != nil {
		fmt.Println("bad verifier key:", err)
		os.Exit(2)
	}
	msg, err := os.ReadFile(os.Args[2])
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		fmt.Println("rejected:", err)
		os.Exit(1)
	}
	fmt.Print(n.Text)
}
