package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// A minimal line chart: axes, tick marks with labels, one polyline per
// series, a legend. Text is basicfont's 7x13 bitmap face.

type series struct {
	Name   string
	Color  color.RGBA
	Xs, Ys []float64
	Dashed bool
}

type chart struct {
	Title, XLabel, YLabel string
	LogX, LogY            bool
	XFmt, YFmt            func(float64) string
	Series                []series
	W, H                  int
}

var (
	black = color.RGBA{0, 0, 0, 255}
	grey  = color.RGBA{225, 225, 225, 255}
	red   = color.RGBA{200, 40, 40, 255}
	blue  = color.RGBA{30, 90, 200, 255}
	green = color.RGBA{30, 150, 60, 255}
	brown = color.RGBA{130, 90, 30, 255}
)

const (
	marginL, marginR, marginT, marginB = 80, 24, 48, 52
)

func (c *chart) render() *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, c.W, c.H))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	px0, px1 := marginL, c.W-marginR
	py0, py1 := c.H-marginB, marginT // py0 is the bottom

	tx := func(v float64) float64 {
		if c.LogX {
			return math.Log10(v)
		}
		return v
	}
	ty := func(v float64) float64 {
		if c.LogY {
			return math.Log10(v)
		}
		return v
	}
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range c.Series {
		for i := range s.Xs {
			xmin, xmax = math.Min(xmin, s.Xs[i]), math.Max(xmax, s.Xs[i])
			ymin, ymax = math.Min(ymin, s.Ys[i]), math.Max(ymax, s.Ys[i])
		}
	}
	var xticks, yticks []float64
	var xlo, xhi, ylo, yhi float64
	if c.LogX {
		xticks, xlo, xhi = logTicks(xmin, xmax)
	} else {
		xticks, xlo, xhi = linTicks(math.Min(0, xmin), xmax)
	}
	if c.LogY {
		yticks, ylo, yhi = logTicks(ymin, ymax)
	} else {
		yticks, ylo, yhi = linTicks(math.Min(0, ymin), ymax)
	}
	sx := func(v float64) int {
		return px0 + int(math.Round((tx(v)-tx(xlo))/(tx(xhi)-tx(xlo))*float64(px1-px0)))
	}
	sy := func(v float64) int {
		return py0 - int(math.Round((ty(v)-ty(ylo))/(ty(yhi)-ty(ylo))*float64(py0-py1)))
	}

	// Grid, ticks and labels.
	for _, t := range xticks {
		x := sx(t)
		vline(img, x, py1, py0, grey)
		vline(img, x, py0, py0+5, black)
		lab := c.XFmt(t)
		text(img, x-textWidth(lab)/2, py0+18, lab, black)
	}
	for _, t := range yticks {
		y := sy(t)
		hline(img, px0, px1, y, grey)
		hline(img, px0-5, px0, y, black)
		lab := c.YFmt(t)
		text(img, px0-8-textWidth(lab), y+4, lab, black)
	}
	hline(img, px0, px1, py0, black)
	vline(img, px0, py1, py0, black)
	hline(img, px0, px1, py1, black)
	vline(img, px1, py1, py0, black)

	text(img, (c.W-textWidth(c.Title))/2, 20, c.Title, black)
	text(img, (px0+px1-textWidth(c.XLabel))/2, c.H-12, c.XLabel, black)
	text(img, 8, marginT-10, c.YLabel, black)

	// Series.
	for _, s := range c.Series {
		for i := 1; i < len(s.Xs); i++ {
			line(img, sx(s.Xs[i-1]), sy(s.Ys[i-1]), sx(s.Xs[i]), sy(s.Ys[i]), s.Color, s.Dashed)
		}
		if len(s.Xs) <= 20 {
			for i := range s.Xs {
				fill(img, sx(s.Xs[i])-3, sy(s.Ys[i])-3, 7, 7, s.Color)
			}
		}
	}
	// Legend, top left inside the plot.
	lw := 0
	for _, s := range c.Series {
		lw = max(lw, textWidth(s.Name))
	}
	lx, ly := px0+12, py1+10
	fill(img, lx-6, ly-4, lw+48, 16*len(c.Series)+8, color.RGBA{255, 255, 255, 255})
	for i, s := range c.Series {
		y := ly + 16*i + 6
		line(img, lx, y, lx+24, y, s.Color, s.Dashed)
		text(img, lx+32, y+4, s.Name, black)
	}
	return img
}

func (c *chart) save(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, c.render()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// linTicks returns ticks at a step of 1, 2 or 5 times a power of ten,
// about six of them, and the axis range they span.
func linTicks(lo, hi float64) ([]float64, float64, float64) {
	if hi <= lo {
		hi = lo + 1
	}
	raw := (hi - lo) / 6
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	step := p
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			step = m * p
			break
		}
	}
	lo = math.Floor(lo/step) * step
	hi = math.Ceil(hi/step) * step
	var ts []float64
	for v := lo; v <= hi+step/2; v += step {
		ts = append(ts, v)
	}
	return ts, lo, hi
}

// logTicks returns ticks at the powers of ten (and at 2 and 5 times them
// when the range spans at most three decades), and the axis range: whole
// decades.
func logTicks(lo, hi float64) ([]float64, float64, float64) {
	a := math.Floor(math.Log10(lo))
	b := math.Ceil(math.Log10(hi))
	if b <= a {
		b = a + 1
	}
	var ts []float64
	for e := a; e <= b; e++ {
		p := math.Pow(10, e)
		ts = append(ts, p)
		if b-a <= 3 && e < b {
			ts = append(ts, 2*p, 5*p)
		}
	}
	return ts, math.Pow(10, a), math.Pow(10, b)
}

// fmtCount writes 1000 as 1k, 1000000 as 1M.
func fmtCount(v float64) string {
	switch {
	case v >= 1e6 && math.Mod(v, 1e6) == 0:
		return fmt.Sprintf("%.0fM", v/1e6)
	case v >= 1e3 && math.Mod(v, 1e3) == 0:
		return fmt.Sprintf("%.0fk", v/1e3)
	}
	return fmt.Sprintf("%g", v)
}

func fmtPlain(v float64) string { return fmt.Sprintf("%g", v) }

func textWidth(s string) int {
	return font.MeasureString(basicfont.Face7x13, s).Round()
}

func text(img *image.RGBA, x, y int, s string, c color.RGBA) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func hline(img *image.RGBA, x0, x1, y int, c color.RGBA) {
	for x := x0; x <= x1; x++ {
		img.SetRGBA(x, y, c)
	}
}

func vline(img *image.RGBA, x, y0, y1 int, c color.RGBA) {
	for y := min(y0, y1); y <= max(y0, y1); y++ {
		img.SetRGBA(x, y, c)
	}
}

func fill(img *image.RGBA, x, y, w, h int, c color.RGBA) {
	draw.Draw(img, image.Rect(x, y, x+w, y+h), image.NewUniform(c), image.Point{}, draw.Src)
}

// line draws a 2-pixel-wide line (Bresenham), dashed if asked.
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA, dashed bool) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	err := dx + dy
	for n := 0; ; n++ {
		if !dashed || (n/6)%2 == 0 {
			img.SetRGBA(x0, y0, c)
			img.SetRGBA(x0+1, y0, c)
			img.SetRGBA(x0, y0+1, c)
		}
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * err
		if e2 >= dy {
			err += dy
			x0 += sx
		}
		if e2 <= dx {
			err += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}
