// refgzip: gzip stdin to stdout as the reference tool (appc/docker2aci 0.17.2,
// lib/docker2aci.go writeSquashedImage) compresses a squashed ACI: the
// github.com/klauspost/pgzip writer at its default level. The benchmark builds it
// with Debian's golang-go and golang-github-klauspost-pgzip-dev (GOPATH mode) to
// measure the size target against the reference's own compressor on our tar.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"

	gzip "github.com/klauspost/pgzip"
)

func main() {
	out := bufio.NewWriterSize(os.Stdout, 1<<20)
	w := gzip.NewWriter(out)
	if _, err := io.Copy(w, bufio.NewReaderSize(os.Stdin, 1<<20)); err != nil {
		fmt.Fprintln(os.Stderr, "refgzip:", err)
		os.Exit(1)
	}
	if err := w.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "refgzip:", err)
		os.Exit(1)
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "refgzip:", err)
		os.Exit(1)
	}
}
