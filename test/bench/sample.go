package main

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// procMem is one process's memory, in KiB.
type procMem struct {
	rss, hwm, anon int64
}

func readStatus(pid int) (procMem, int, bool) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return procMem{}, 0, false
	}
	defer f.Close()
	var m procMem
	uid := -1
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(fields[0], 10, 64)
		switch k {
		case "VmRSS":
			m.rss = n
		case "VmHWM":
			m.hwm = n
		case "RssAnon":
			m.anon = n
		case "Uid":
			uid = int(n)
		}
	}
	return m, uid, true
}

// procs are the live processes: pid → (parent, command line).
type procInfo struct {
	ppid int
	cmd  string
}

func listProcs() map[int]procInfo {
	out := map[int]procInfo{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The command name is in parentheses and may hold spaces.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		out[pid] = procInfo{ppid: ppid, cmd: string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))}
	}
	return out
}

// members are the pids of g among procs.
func (g ProcGroup) members(procs map[int]procInfo) []int {
	var out []int
	for pid, p := range procs {
		if g.Root > 0 && !descends(procs, pid, g.Root) {
			continue
		}
		if g.Match != "" && !strings.Contains(" "+p.cmd, g.Match) {
			continue
		}
		out = append(out, pid)
	}
	return out
}

func descends(procs map[int]procInfo, pid, root int) bool {
	for i := 0; i < 64 && pid > 1; i++ {
		if pid == root {
			return true
		}
		pid = procs[pid].ppid
	}
	return pid == root
}

// GroupPeak is what sampling saw of one process group during a run.
type GroupPeak struct {
	// PeakRSSKiB is the largest sum of the members' RSS in one sample.
	PeakRSSKiB int64 `json:"peak_rss_kib"`
	// PeakAnonKiB is the same for anonymous memory (RSS without mapped
	// files such as the binary).
	PeakAnonKiB int64 `json:"peak_anon_kib"`
	// HWMSumKiB adds up the highest VmHWM of every member seen: an upper
	// bound, members need not peak together.
	HWMSumKiB int64 `json:"hwm_sum_kib"`
	// MaxProcs is the most members seen at once.
	MaxProcs int `json:"max_procs"`
}

// sampler samples memory and disk until stopped.
type sampler struct {
	plan  *Plan
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	peaks map[string]*GroupPeak
	// peakSum is the largest per-sample sum over group combinations a
	// goal names ("agent+helpers").
	combos   map[string]int64
	hwm      map[string]map[int]int64
	disk0    map[string]int64
	diskPeak map[string]int64
	samples  int
}

func startSampler(plan *Plan) *sampler {
	s := &sampler{plan: plan, stop: make(chan struct{}), done: make(chan struct{}),
		peaks: map[string]*GroupPeak{}, combos: map[string]int64{}, hwm: map[string]map[int]int64{},
		disk0: map[string]int64{}, diskPeak: map[string]int64{}}
	for _, g := range plan.Processes {
		s.peaks[g.Name] = &GroupPeak{}
		s.hwm[g.Name] = map[int]int64{}
	}
	for _, d := range plan.Disks {
		s.disk0[d.Name] = used(d.Path)
		s.diskPeak[d.Name] = s.disk0[d.Name]
	}
	go s.loop()
	return s
}

// used is the bytes in use on the filesystem holding path.
func used(path string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize
}

func (s *sampler) loop() {
	defer close(s.done)
	t := time.NewTicker(time.Duration(s.plan.SampleMillis) * time.Millisecond)
	defer t.Stop()
	for {
		s.sample()
		select {
		case <-s.stop:
			s.sample()
			return
		case <-t.C:
		}
	}
}

func (s *sampler) sample() {
	procs := listProcs()
	rss := map[string]int64{}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples++
	for _, g := range s.plan.Processes {
		var sum, anon int64
		n := 0
		for _, pid := range g.members(procs) {
			m, uid, ok := readStatus(pid)
			if !ok || (g.UID != nil && uid != *g.UID) {
				continue
			}
			n++
			sum += m.rss
			anon += m.anon
			if m.hwm > s.hwm[g.Name][pid] {
				s.hwm[g.Name][pid] = m.hwm
			}
		}
		p := s.peaks[g.Name]
		p.PeakRSSKiB = max(p.PeakRSSKiB, sum)
		p.PeakAnonKiB = max(p.PeakAnonKiB, anon)
		p.MaxProcs = max(p.MaxProcs, n)
		rss[g.Name] = sum
	}
	for _, g := range s.plan.Goals {
		names, ok := strings.CutPrefix(g.Of, "memory:")
		if !ok {
			continue
		}
		var sum int64
		for _, n := range strings.Split(names, "+") {
			sum += rss[n]
		}
		s.combos[names] = max(s.combos[names], sum)
	}
	for _, d := range s.plan.Disks {
		s.diskPeak[d.Name] = max(s.diskPeak[d.Name], used(d.Path))
	}
}

// Sampled is what one run's sampling found.
type Sampled struct {
	Samples int                   `json:"samples"`
	Groups  map[string]*GroupPeak `json:"memory,omitempty"`
	// Combined are peaks of the sums of groups ("agent+helpers"), KiB.
	Combined map[string]int64 `json:"memory_combined_kib,omitempty"`
	// DiskGrowth is the peak growth of each disk's use over its use when
	// the run started, in bytes.
	DiskGrowth map[string]int64 `json:"disk_growth_bytes,omitempty"`
}

func (s *sampler) finish() Sampled {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Sampled{Samples: s.samples, Groups: s.peaks, Combined: s.combos, DiskGrowth: map[string]int64{}}
	for name, h := range s.hwm {
		for _, v := range h {
			s.peaks[name].HWMSumKiB += v
		}
	}
	for name, peak := range s.diskPeak {
		out.DiskGrowth[name] = max(0, peak-s.disk0[name])
	}
	return out
}
