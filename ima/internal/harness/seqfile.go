package harness

// seqState is the part of struct seq_file that reads use, for the model. The
// functions below are a transcription of fs/seq_file.c, kept close to the C
// so that they can be read side by side with it; records are supplied by a
// function that returns the rendering of the record at an index of the list
// (the ima_measurements_start()/next() pair walks the list by index) and
// false past its end.
type seqState struct {
	buf     []byte // m->buf; only buf[:count+from] is meaningful
	size    int    // m->size; 0 until the first buffer is allocated
	from    int    // m->from
	count   int    // m->count
	index   int    // m->index
	readPos int64  // m->read_pos
}

// recordAt returns the rendering of record i of a list, or false past its end.
type recordAt func(i int) ([]byte, bool)

// fits reports whether a record of n bytes can be shown into a buffer that
// already holds count bytes: seq_putc() and seq_printf() fill the buffer and
// seq_has_overflowed() is count == size, so a record needs a byte to spare.
func (m *seqState) fits(n int) bool { return m.count+n < m.size }

// read is seq_read_iter() for a read of want bytes at *pos, for a list
// whose records recs gives. It returns the bytes copied (none means EOF: no
// record shows an error in these files).
func (m *seqState) read(pos *int64, want int, pageSize int, recs recordAt) []byte {
	if want == 0 {
		return nil
	}
	// "if request is to read from zero offset, reset iterator to first
	// record as it might have been already advanced by previous requests"
	if *pos == 0 {
		m.index = 0
		m.count = 0
	}
	// "Don't assume ki_pos is where we left it"
	if *pos != m.readPos {
		m.traverse(*pos, pageSize, recs) // loops on -EAGAIN internally
		m.readPos = *pos
	}
	if m.size == 0 {
		m.size = pageSize
	}
	var out []byte
	// "something left in the buffer - copy it out first"
	if m.count > 0 {
		n := min(want, m.count)
		out = append(out, m.buf[m.from:m.from+n]...)
		m.count -= n
		m.from += n
		if m.count > 0 {
			return m.done(pos, out)
		}
	}
	// "get a non-empty record or run out of records"
	m.from = 0
	for {
		rec, ok := recs(m.index) // m->op->start(m, &m->index)
		if !ok {
			m.count = 0 // EOF
			return m.done(pos, out)
		}
		// m->count is 0 here: show the record into an empty buffer.
		if m.fits(len(rec)) {
			m.buf = append(m.buf[:0], rec...)
			m.count = len(rec)
			break // goto Fill
		}
		// "need a bigger buffer"
		m.count = 0
		m.size <<= 1
	}
	// Fill: "one non-empty record is in the buffer; if they want more, try
	// to fit more in, but in any case we need to advance the iterator once
	// for every record shown."
	for {
		m.index++ // m->op->next(m, p, &m->index)
		rec, ok := recs(m.index)
		if !ok {
			break // "no next record for us"
		}
		if m.count >= want-len(out) { // iov_iter_count(iter)
			break
		}
		if !m.fits(len(rec)) {
			break // overflow: m->count = offs
		}
		m.buf = append(m.buf[:m.count], rec...)
		m.count += len(rec)
	}
	n := min(want-len(out), m.count)
	out = append(out, m.buf[:n]...)
	m.count -= n
	m.from = n
	return m.done(pos, out)
}

// done is the tail of seq_read_iter(): ki_pos and read_pos advance by what
// was copied.
func (m *seqState) done(pos *int64, out []byte) []byte {
	*pos += int64(len(out))
	m.readPos += int64(len(out))
	return out
}

// traverse is fs/seq_file.c:traverse(), retried while it answers -EAGAIN
// (a record did not fit the buffer, which is then doubled).
func (m *seqState) traverse(offset int64, pageSize int, recs recordAt) {
	for !m.traverseOnce(offset, pageSize, recs) {
	}
}

func (m *seqState) traverseOnce(offset int64, pageSize int, recs recordAt) bool {
	var pos int64
	m.index = 0
	m.count, m.from = 0, 0
	if offset == 0 {
		return true
	}
	if m.size == 0 {
		m.size = pageSize
	}
	for {
		rec, ok := recs(m.index)
		if !ok {
			return true
		}
		if !m.fits(len(rec)) { // m->count is 0: goto Eoverflow
			m.count = 0
			m.size <<= 1
			return false
		}
		m.buf = append(m.buf[:0], rec...)
		m.count = len(rec)
		m.index++ // m->op->next()
		if pos+int64(m.count) > offset {
			m.from = int(offset - pos)
			m.count -= m.from
			return true
		}
		pos += int64(m.count)
		m.count = 0
		if pos == offset {
			return true
		}
	}
}

// lseek is fs/seq_file.c:seq_lseek() for SEEK_SET and SEEK_CUR (already
// turned into an absolute offset by the caller, which also refuses negative
// offsets and other whences with EINVAL).
func (m *seqState) lseek(fpos *int64, offset int64, pageSize int, recs recordAt) {
	if offset != m.readPos {
		m.traverse(offset, pageSize, recs)
		m.readPos = offset
	}
	*fpos = offset
}
