// The HTTP ceiling: a bare Node HTTP server that answers every request with one constant JSON,
// driven by the same load generator (`--target bare`) as the service. What it reaches is the most
// one HTTP request per command can do on this machine.
//   PORT=8080 node --import tsx bench/bare-server.ts
import { createServer } from 'node:http';

const BODY = JSON.stringify({ id: 'bare', status: 'delivered', version: 1 });
const PORT = Number(process.env.PORT ?? 0);

const server = createServer((req, res) => {
  req.resume(); // the body is read and dropped, as a real server reads it
  req.on('end', () => {
    res.writeHead(req.method === 'POST' && req.url === '/orders' ? 201 : 200, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(BODY),
    });
    res.end(BODY);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(PORT, '127.0.0.1', () => {
  const address = server.address();
  console.log(`bare HTTP server listening on http://127.0.0.1:${typeof address === 'object' && address ? address.port : PORT}`);
});
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => server.close(() => process.exit(0)).closeAllConnections());
