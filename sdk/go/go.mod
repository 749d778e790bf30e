module trust-protocol/sdk/go

go 1.19
