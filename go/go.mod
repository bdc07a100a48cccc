module github.com/coffer-project/coffer/go

go 1.19
