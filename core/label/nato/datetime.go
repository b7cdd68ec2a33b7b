package nato

// validDateTime reports whether s is an XML Schema 1.1 dateTime:
// -?YYYY-MM-DDThh:mm:ss(.s+)?(Z|(+|-)hh:mm)? with a real calendar date.
func validDateTime(s string) bool {
	if len(s) > 0 && s[0] == '-' {
		s = s[1:]
	}
	n := 0
	for n < len(s) && isDigit(s[n]) {
		n++
	}
	// A year has at least four digits and no leading zero beyond four.
	if n < 4 || n > 4 && s[0] == '0' {
		return false
	}
	// Leap years repeat every 400 years, so the last four digits decide.
	year := num(s[n-4 : n])
	s = s[n:]
	if len(s) < 15 || s[0] != '-' || s[3] != '-' || s[6] != 'T' || s[9] != ':' || s[12] != ':' {
		return false
	}
	for _, i := range []int{1, 2, 4, 5, 7, 8, 10, 11, 13, 14} {
		if !isDigit(s[i]) {
			return false
		}
	}
	month, day := num(s[1:3]), num(s[4:6])
	hour, minute, sec := num(s[7:9]), num(s[10:12]), num(s[13:15])
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) {
		return false
	}
	if minute > 59 || sec > 59 || hour > 24 {
		return false
	}
	s = s[15:]
	fraction := false
	if len(s) > 0 && s[0] == '.' {
		n := 1
		for n < len(s) && isDigit(s[n]) {
			if s[n] != '0' {
				fraction = true
			}
			n++
		}
		if n == 1 {
			return false
		}
		s = s[n:]
	}
	// 24:00:00 is allowed as the end of a day, with nothing after it.
	if hour == 24 && (minute != 0 || sec != 0 || fraction) {
		return false
	}
	switch {
	case s == "" || s == "Z":
		return true
	case len(s) == 6 && (s[0] == '+' || s[0] == '-') && s[3] == ':' &&
		isDigit(s[1]) && isDigit(s[2]) && isDigit(s[4]) && isDigit(s[5]):
		h, m := num(s[1:3]), num(s[4:6])
		return m <= 59 && (h < 14 || h == 14 && m == 0)
	}
	return false
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// num converts a short run of ASCII digits.
func num(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}
