//go:build !linux

package disruptor

import (
	"errors"
	"runtime"
)

func allowedCPUs() ([]int, error) {
	cpus := make([]int, runtime.NumCPU())
	for i := range cpus {
		cpus[i] = i
	}
	return cpus, nil
}

func pinCurrentThread(int) (func(), error) {
	return nil, errors.New("disruptor: CPU pinning is only supported on Linux")
}
