package reqauth

// windowBits is how far behind the newest sequence number a request may
// arrive and still be accepted once. The manager numbers requests when it
// signs them and many are in flight at once, so they arrive a little out
// of order; a window this wide covers thousands in flight.
const (
	windowWords = 128
	windowBits  = windowWords * 64
)

// window remembers which sequence numbers were seen, in the manner of RFC
// 6479: a ring of bits covering the windowBits numbers up to the newest.
// Memory is fixed, whatever the number of requests.
type window struct {
	newest uint64
	ring   [windowWords]uint64
}

// accept records seq and reports whether it was new: false for a number
// seen before or one so old it fell out of the window.
func (w *window) accept(seq uint64) bool {
	if seq == 0 {
		return false
	}
	if seq > w.newest {
		// Clear the words the window slides over. The word of seq itself
		// is cleared too: it held numbers windowBits older.
		from, to := w.newest/64+1, seq/64
		switch {
		case to < from:
			// Same word as the newest: nothing slides.
		case to-from >= windowWords:
			w.ring = [windowWords]uint64{}
		default:
			for i := from; i <= to; i++ {
				w.ring[i%windowWords] = 0
			}
		}
		w.newest = seq
	} else if w.newest-seq >= windowBits-64 {
		// Older than the window: its word may already hold newer numbers.
		return false
	}
	word, bit := &w.ring[(seq/64)%windowWords], uint64(1)<<(seq%64)
	if *word&bit != 0 {
		return false
	}
	*word |= bit
	return true
}
