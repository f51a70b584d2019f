module github.com/badbatch/badbatch/disruptor/compare

go 1.26.0

require (
	github.com/Workiva/go-datastructures v1.1.7
	github.com/badbatch/badbatch v0.0.0
	github.com/bytedance/gopkg v0.1.4
)

require (
	github.com/klauspost/cpuid/v2 v2.4.2 // indirect
	golang.org/x/sys v0.50.0 // indirect
)

replace github.com/badbatch/badbatch => ../..
