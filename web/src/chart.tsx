/** Queue length and runs in progress over time, drawn with uPlot from the live log. */
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { live } from './live';

function series(): uPlot.AlignedData {
  const points = live.points;
  const now = Date.now() / 1000;
  const last = points.at(-1);
  // The counts hold until the next event: extend the last step to now.
  const all = last && last.t < now ? [...points, { ...last, t: now }] : points;
  return [all.map((p) => p.t), all.map((p) => p.queued), all.map((p) => p.inProgress)];
}

export function QueueChart(props: { version: number }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);

  useEffect(() => {
    const element = box.current;
    if (!element) return;
    const steps = uPlot.paths.stepped?.({ align: 1 });
    plot.current = new uPlot(
      {
        width: element.clientWidth || 600,
        height: 220,
        scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(4, Math.ceil(max * 1.15))] } },
        axes: [
          { stroke: '#5b6b7d', grid: { stroke: '#eef1f5' } },
          { stroke: '#5b6b7d', grid: { stroke: '#eef1f5' } },
        ],
        series: [
          {},
          { label: 'queued', stroke: '#d97706', width: 2, fill: 'rgba(217,119,6,0.08)', paths: steps },
          { label: 'in progress', stroke: '#2563eb', width: 2, fill: 'rgba(37,99,235,0.08)', paths: steps },
        ],
        legend: { live: false },
        cursor: { drag: { x: false, y: false } },
      },
      series(),
      element,
    );
    const resize = new ResizeObserver(() => plot.current?.setSize({ width: element.clientWidth, height: 220 }));
    resize.observe(element);
    return () => {
      resize.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, []);

  useEffect(() => {
    plot.current?.setData(series());
  }, [props.version]);

  return <div class="chart" ref={box} data-testid="queue-chart" />;
}
