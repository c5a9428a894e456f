"""One module per CLI command group. Each keeps heavy imports inside its functions so that
`faultwarden --help` stays fast."""
