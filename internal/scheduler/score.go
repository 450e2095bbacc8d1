package scheduler

// scorer rates an eligible node for an allocation; higher is better.
type scorer func(a *ask, n *nodeState) float64

// scorerFor returns the scorer of a strategy; unknown names get spread.
func scorerFor(s Strategy) scorer {
	if s == Binpack {
		return binpackScore
	}
	return spreadScore
}

// binpackScore is the node's utilisation once a is placed on it.
func binpackScore(a *ask, n *nodeState) float64 {
	return utilisationAfter(a, n)
}

// spreadScore puts the allocations of the job on the node first and
// utilisation second: (1 - utilisation)/2 stays within [0, 0.5], so one
// allocation of the job more always costs more than any utilisation.
func spreadScore(a *ask, n *nodeState) float64 {
	return (1-utilisationAfter(a, n))/2 - float64(n.jobs[a.job])
}

// utilisationAfter is the mean of the node's CPU and memory fractions once
// a is placed on it.
func utilisationAfter(a *ask, n *nodeState) float64 {
	allocatable := n.node.Status.Allocatable
	return (fraction(n.cpu+a.request.CPU, allocatable.CPU) +
		fraction(n.memory+a.request.Memory, allocatable.Memory)) / 2
}

// fraction is used/total within [0, 1]; a node offering none of a resource
// counts as empty of it.
func fraction(used, total int64) float64 {
	if total <= 0 || used <= 0 {
		return 0
	}
	if used >= total {
		return 1
	}
	return float64(used) / float64(total)
}
