// The node's live channel (ws(s)://host/fhir/$live, node/fhir/live.py): events for this user,
// plus new blocks and audit-trail changes when asked for. Reconnects with back-off, buying a
// fresh token when the old one has expired.
import { useEffect, useRef, useState } from "react";
import type { Session } from "./session";

export interface LiveEvent {
  event: "version" | "grant" | "revoke" | "break-glass" | "audit" | "block";
  patient?: string;
  resource?: string;
  grantee?: string;
  number?: number;
  [key: string]: unknown;
}

export type LiveState = "connecting" | "live" | "offline";

export function useLive(session: Session, onEvent: (e: LiveEvent) => void): LiveState {
  const [state, setState] = useState<LiveState>("connecting");
  const handler = useRef(onEvent);
  handler.current = onEvent;

  useEffect(() => {
    let socket: WebSocket | null = null;
    let closed = false;
    let retry = 500;
    let timer: number | undefined;

    const connect = async (fresh: boolean) => {
      setState("connecting");
      let token: string;
      try {
        token = fresh ? await session.login() : await session.bearer();
      } catch {
        schedule(true);
        return;
      }
      if (closed) return;
      const scheme = window.location.protocol === "https:" ? "wss" : "ws";
      const url = `${scheme}://${window.location.host}/fhir/$live?token=${encodeURIComponent(token)}`
        + "&include=block,audit";
      const ws = new WebSocket(url);
      socket = ws;
      let opened = false;
      ws.onopen = () => {
        opened = true;
        retry = 500;
        setState("live");
        handler.current({ event: "audit" }); // catch up on anything missed while offline
      };
      ws.onmessage = (message) => {
        try {
          handler.current(JSON.parse(String(message.data)) as LiveEvent);
        } catch {
          /* not JSON: ignore */
        }
      };
      ws.onclose = () => {
        if (closed) return;
        setState("offline");
        schedule(!opened); // refused before opening: most likely an expired token
      };
    };
    const schedule = (fresh: boolean) => {
      if (closed) return;
      timer = window.setTimeout(() => void connect(fresh), retry);
      retry = Math.min(retry * 2, 10_000);
    };
    void connect(false);
    return () => {
      closed = true;
      window.clearTimeout(timer);
      socket?.close();
    };
  }, [session]);

  return state;
}
