import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// The node serves the build under /ui/ on its FHIR port; `npm run dev` proxies the API to a
// running node (MEDLEDGER_FHIR, default http://127.0.0.1:8080) so the dev server is same-origin.
const target = process.env.MEDLEDGER_FHIR ?? "http://127.0.0.1:8080";

export default defineConfig({
  base: "/ui/",
  plugins: [react()],
  build: {
    outDir: process.env.MEDLEDGER_WEB_OUT ?? "dist",
    emptyOutDir: true,
    sourcemap: false,
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 2000,
  },
  server: {
    proxy: {
      "/fhir": { target, ws: true, changeOrigin: true },
      "/auth": { target, changeOrigin: true },
      "/rpc": { target, changeOrigin: true },
    },
  },
});
