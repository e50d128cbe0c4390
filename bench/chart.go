package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Charts are drawn with image/png and a bitmap font: a few bars and lines do
// not need a plotting library and its dependency tree.

var palette = map[string]color.RGBA{
	"direct":     {150, 150, 150, 255},
	"naive-go":   {120, 120, 200, 255},
	"haproxy":    {46, 134, 193, 255},
	"nginx":      {40, 160, 90, 255},
	"ghostunnel": {150, 90, 170, 255},
	"caddy-l4":   {230, 150, 30, 255},
	"mcgate":     {210, 40, 40, 255},
	baselineName: {240, 150, 150, 255},
}

type canvas struct{ *image.RGBA }

func newCanvas(w, h int) canvas {
	c := canvas{image.NewRGBA(image.Rect(0, 0, w, h))}
	draw.Draw(c, c.Bounds(), image.White, image.Point{}, draw.Src)
	return c
}

func (c canvas) rect(x0, y0, x1, y1 int, col color.Color) {
	draw.Draw(c, image.Rect(x0, y0, x1, y1), &image.Uniform{col}, image.Point{}, draw.Src)
}

func (c canvas) text(x, y int, s string, col color.Color) {
	d := font.Drawer{Dst: c, Src: &image.Uniform{col}, Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func textWidth(s string) int { return 7 * len([]rune(s)) }

// line draws a w-pixel-wide segment by stepping along its longer axis.
func (c canvas) line(x0, y0, x1, y1 float64, w int, col color.Color) {
	n := int(math.Max(math.Abs(x1-x0), math.Abs(y1-y0))) + 1
	for i := 0; i <= n; i++ {
		t := float64(i) / float64(n)
		x, y := int(x0+t*(x1-x0)), int(y0+t*(y1-y0))
		c.rect(x-w/2, y-w/2, x-w/2+w, y-w/2+w, col)
	}
}

var (
	black = color.RGBA{0, 0, 0, 255}
	grey  = color.RGBA{210, 210, 210, 255}
)

// charts writes one bar chart per table and latency curves of the first table.
func (rep *report) charts(dir string) ([]string, error) {
	var files []string
	for _, table := range rep.Tables {
		name := "throughput-" + strings.ReplaceAll(table, " ", "") + ".png"
		if err := savePNG(filepath.Join(dir, name), rep.barChart(table)); err != nil {
			return files, err
		}
		files = append(files, filepath.Join(dir, name))
	}
	if len(rep.Tables) > 0 {
		p := filepath.Join(dir, "latency.png")
		if err := savePNG(p, rep.latencyChart(rep.Tables[0])); err != nil {
			return files, err
		}
		files = append(files, p)
	}
	return files, nil
}

func savePNG(path string, img image.Image) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// barChart: one panel per throughput metric (and idle memory), a bar per system.
func (rep *report) barChart(table string) image.Image {
	labels := []string{"handshake: conn/s", "resume: conn/s", "t-connect: conn/s", "bulk1: MB/s", "bulk8: MB/s", "t-bulk1: MB/s",
		"rr1: ops/s", "rr32: ops/s", "idle: RSS per connection (KiB)"}
	var ms []metric
	for _, m := range metrics() {
		for _, l := range labels {
			if m.Label == l {
				ms = append(ms, m)
			}
		}
	}
	systems := rep.systems()
	const cols, pw, ph = 3, 600, 300
	rows := (len(ms) + cols - 1) / cols
	c := newCanvas(cols*pw, rows*ph+40)
	c.text(10, 22, fmt.Sprintf("mcgate bench, %s per proxy (%s mode, load %.1f -> %.1f)", table, rep.Mode, rep.LoadStart, rep.LoadEnd), black)
	for i, m := range ms {
		x0, y0 := (i%cols)*pw, 40+(i/cols)*ph
		title := m.Label
		if !m.Higher {
			title += " (lower is better)"
		}
		c.text(x0+20, y0+16, title, black)
		maxV := 0.0
		for _, s := range systems {
			if v := rep.cell(table, s, m); !math.IsNaN(v) {
				maxV = math.Max(maxV, v)
			}
		}
		top, bottom := y0+40, y0+ph-40
		c.rect(x0+20, bottom, x0+pw-20, bottom+1, black)
		bw := (pw - 40) / max(1, len(systems))
		for j, s := range systems {
			bx := x0 + 20 + j*bw
			name := s
			if len(name) > bw/7 {
				name = name[:bw/7]
			}
			c.text(bx+(bw-textWidth(name))/2, bottom+16, name, black)
			v := rep.cell(table, s, m)
			if math.IsNaN(v) || maxV == 0 {
				c.text(bx+bw/2-3, bottom-4, "-", black)
				continue
			}
			h := int(float64(bottom-top) * v / maxV)
			c.rect(bx+6, bottom-h, bx+bw-6, bottom, palette[s])
			lbl := fmtVal(m.Fmt, v)
			c.text(bx+(bw-textWidth(lbl))/2, bottom-h-4, lbl, black)
		}
	}
	return c
}

// latencyChart: percentile curves (x: percentile on a log(1/(1-q)) scale, y:
// latency on a log scale), one panel per latency scenario, a line per system.
func (rep *report) latencyChart(table string) image.Image {
	scs := []string{"rr1", "rate", "rr32", "t-rr1", "handshake", "t-connect"}
	systems := rep.systems()
	const cols, pw, ph = 2, 700, 380
	rows := (len(scs) + cols - 1) / cols
	c := newCanvas(cols*pw, rows*ph+70)
	c.text(10, 22, fmt.Sprintf("latency percentiles, %s per proxy (microseconds, log scale)", table), black)
	for j, s := range systems {
		x := 10 + j*130
		c.rect(x, 38, x+20, 44, palette[s])
		c.text(x+26, 46, s, black)
	}
	const xMax = 4.0 // 99.99th percentile
	for i, sc := range scs {
		x0, y0 := (i%cols)*pw, 70+(i/cols)*ph
		left, right, top, bottom := x0+70, x0+pw-20, y0+30, y0+ph-40
		c.text(x0+70, y0+16, sc, black)
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, s := range systems {
			if r := rep.find(table, s, sc); r != nil && r.Hist != nil && r.Hist.TotalCount() > 0 {
				lo = math.Min(lo, math.Max(1, float64(r.Hist.Min())))
				hi = math.Max(hi, float64(r.Hist.ValueAtQuantile(99.99)))
			}
		}
		if math.IsInf(lo, 0) {
			c.text(left, top+20, "no data", black)
			continue
		}
		llo, lhi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
		if lhi <= llo {
			lhi = llo + 1
		}
		py := func(v float64) float64 {
			return float64(bottom) - (math.Log10(math.Max(v, 1))-llo)/(lhi-llo)*float64(bottom-top)
		}
		px := func(xv float64) float64 { return float64(left) + xv/xMax*float64(right-left) }
		for d := llo; d <= lhi; d++ {
			y := int(py(math.Pow(10, d)))
			c.rect(left, y, right, y+1, grey)
			c.text(x0+10, y+4, fmt.Sprintf("%g", math.Pow(10, d)), black)
		}
		for _, q := range []float64{50, 90, 99, 99.9, 99.99} {
			x := int(px(-math.Log10(1 - q/100)))
			lbl := fmt.Sprintf("p%g", q)
			c.rect(x, top, x+1, bottom, grey)
			c.text(x-textWidth(lbl)/2, bottom+16, lbl, black)
		}
		c.rect(left, bottom, right, bottom+1, black)
		c.rect(left, top, left+1, bottom, black)
		for _, s := range systems {
			r := rep.find(table, s, sc)
			if r == nil || r.Hist == nil || r.Hist.TotalCount() == 0 {
				continue
			}
			var px0, py0 float64
			for k := 0; k <= 200; k++ {
				xv := xMax * float64(k) / 200
				q := 100 * (1 - math.Pow(10, -xv))
				x, y := px(xv), py(float64(r.Hist.ValueAtQuantile(q)))
				if k > 0 {
					c.line(px0, py0, x, y, 2, palette[s])
				}
				px0, py0 = x, y
			}
		}
	}
	return c
}
