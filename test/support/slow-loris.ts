// A slow-loris sender: a request's head, then its body a byte at a time and never whole, until the server answers
// and closes. Resolves with everything the server wrote back.
import net from "node:net";

export function trickle(port: number, head: string, everyMs: number, host = "127.0.0.1"): Promise<string> {
  const socket = net.connect(port, host);
  return new Promise<string>((resolve) => {
    let got = "";
    const drip = setInterval(() => socket.writable && socket.write(" "), everyMs);
    socket.on("data", (d: Buffer) => (got += d.toString("utf8")));
    socket.on("error", () => socket.destroy());
    socket.on("close", () => {
      clearInterval(drip);
      resolve(got);
    });
    socket.write(`${head}\r\n\r\n{`);
  });
}
