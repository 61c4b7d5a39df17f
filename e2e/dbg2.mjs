import { Relay } from '/work/main/e2e/helpers.mjs';
const relay = await new Relay(['alice', 'bob']).start();
const ws = new WebSocket(relay.url.replace('http', 'ws') + '/ws');
ws.onmessage = (m) => console.log('in', String(m.data).slice(0, 200));
ws.onopen = () => {
  ws.send(JSON.stringify({ type: 'hello', token: relay.token('alice') }));
  setTimeout(() => ws.send(JSON.stringify({ type: 'create_direct', req: 1, staff: 'bob' })), 300);
  setTimeout(() => ws.send(JSON.stringify({ type: 'typing', req: 2, conversation: 1 })), 600);
};
await new Promise(r => setTimeout(r, 1200));
ws.close(); await relay.stop();
