// The benchmark's trace collector: a lean OTLP/HTTP sink in a process of its own, standing in for
// an OpenTelemetry Collector. Every export (POST /v1/traces, protobuf or JSON) is drained, counted
// and answered 200; nothing is decoded, so its CPU is the cost of receiving, not of a backend. The
// benchmark reads and resets its counts over /_bench/ (reset, stats).
//   PORT=4318 node --import tsx bench/otlp-sink.ts
import { createServer, type ServerResponse } from 'node:http';

const PORT = Number(process.env.PORT ?? 0);

let exports = 0;
let bytes = 0;

function answer(res: ServerResponse, status: number, body?: unknown, type = 'application/json'): void {
  const text = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text) }).end(text);
}

const server = createServer((req, res) => {
  const route = `${req.method} ${req.url}`;
  if (route === 'POST /v1/traces') {
    exports += 1;
    req.on('data', (c: Buffer) => (bytes += c.length));
    // An empty ExportTraceServiceResponse: full success, in the encoding it was sent in.
    const json = (req.headers['content-type'] ?? '').includes('json');
    req.once('end', () => answer(res, 200, json ? '{}' : '', json ? 'application/json' : 'application/x-protobuf'));
    return;
  }
  req.resume();
  switch (route) {
    case 'POST /_bench/reset':
      exports = 0;
      bytes = 0;
      return answer(res, 204);
    case 'GET /_bench/stats':
      return answer(res, 200, { exports, bytes });
    default:
      return answer(res, 404, { error: { code: 'not_found', message: `no ${route} here`, details: {} } });
  }
});
server.keepAliveTimeout = 65_000;
server.listen(PORT, '127.0.0.1', () => {
  const address = server.address();
  console.log(`OTLP sink listening on http://127.0.0.1:${typeof address === 'object' && address ? address.port : PORT}`);
});
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => server.close(() => process.exit(0)).closeAllConnections());
