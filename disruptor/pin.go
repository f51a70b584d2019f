package disruptor

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/klauspost/cpuid/v2"
)

// PinDecision says which logical CPU a processor goroutine is pinned to.
type PinDecision struct {
	// Processor is the index of the processor in the order handlers were added.
	Processor int `json:"processor"`
	// CPU is the logical CPU the processor's OS thread is bound to.
	CPU int `json:"cpu"`
	// Core identifies the physical core ("package/core").
	Core string `json:"core"`
	// Err is set when binding the thread failed at start (the processor
	// then runs unpinned).
	Err string `json:"error,omitempty"`
}

// PhysicalCore is one physical core and the logical CPUs (hyper-threads) on it.
type PhysicalCore struct {
	// ID is "package/core".
	ID string
	// CPUs are the logical CPU numbers, ascending.
	CPUs []int
}

// PlanPinning chooses a distinct physical core for each of n processors
// among the CPUs this process may run on, leaving at least one physical core
// for producers and the Go runtime. It refuses (returns an error) rather
// than oversubscribe: two busy-spinning goroutines on one core halve each
// other's speed.
func PlanPinning(n int) ([]PinDecision, error) {
	cores, err := PhysicalCores()
	if err != nil {
		return nil, err
	}
	if n > len(cores)-1 {
		return nil, fmt.Errorf("disruptor: cannot pin %d processors to distinct physical cores: %d usable physical cores (%s, %d logical CPUs per cpuid) and one is kept for producers",
			n, len(cores), cpuid.CPU.BrandName, cpuid.CPU.LogicalCores)
	}
	plan := make([]PinDecision, n)
	// Keep the first core for producers and the runtime; pin from the last.
	for i := 0; i < n; i++ {
		c := cores[len(cores)-1-i]
		plan[i] = PinDecision{Processor: i, CPU: c.CPUs[0], Core: c.ID}
	}
	return plan, nil
}

// PhysicalCores groups the CPUs this process may run on by physical core,
// using the Linux topology in /sys when present and cpuid's threads-per-core
// otherwise.
func PhysicalCores() ([]PhysicalCore, error) {
	allowed, err := allowedCPUs()
	if err != nil {
		return nil, err
	}
	byCore := map[string][]int{}
	for _, cpu := range allowed {
		base := filepath.Join("/sys/devices/system/cpu", "cpu"+strconv.Itoa(cpu), "topology")
		pkg, err1 := os.ReadFile(filepath.Join(base, "physical_package_id"))
		core, err2 := os.ReadFile(filepath.Join(base, "core_id"))
		var id string
		if err1 == nil && err2 == nil {
			id = strings.TrimSpace(string(pkg)) + "/" + strings.TrimSpace(string(core))
		} else {
			tpc := cpuid.CPU.ThreadsPerCore
			if tpc < 1 {
				tpc = 1
			}
			id = "0/" + strconv.Itoa(cpu/tpc)
		}
		byCore[id] = append(byCore[id], cpu)
	}
	cores := make([]PhysicalCore, 0, len(byCore))
	for id, cpus := range byCore {
		sort.Ints(cpus)
		cores = append(cores, PhysicalCore{ID: id, CPUs: cpus})
	}
	sort.Slice(cores, func(i, j int) bool { return cores[i].CPUs[0] < cores[j].CPUs[0] })
	return cores, nil
}
