/**
 * Local stand-ins for the images docker-compose.yml names, for podman without a registry: a Debian
 * bookworm base from debootstrap, then docker/standins/<name>/Dockerfile on it, tagged as the original.
 */
import { run } from "./commands.ts";
import { removeWorkDir, RUN_LABEL } from "./cleanup.ts";

/** The stand-in folder under docker/standins/ for each image repository the project uses. */
const STANDIN_FOLDERS: Record<string, string> = {
  "docker.io/library/postgres": "postgres",
  "docker.io/library/redis": "redis",
  "docker.io/library/nats": "nats",
  "docker.io/library/nginx": "nginx",
  "docker.io/denoland/deno": "deno",
};

/**
 * One line for each image of a profile's service that has no stand-in: that service is not run,
 * everything else is checked.
 */
export function withoutStandins(
  profiled: { service: string; profiles: string[]; image?: string }[],
): string[] {
  const seen = new Set<string>();
  const lines: string[] = [];
  for (const { service, profiles, image } of profiled) {
    if (!image || seen.has(image) || image.replace(/:[^/:]*$/, "") in STANDIN_FOLDERS) continue;
    seen.add(image);
    lines.push(
      `${service} (profile ${profiles.join(", ")}) is not run: no stand-in for ${image}; ` +
        "the rest is checked",
    );
  }
  return lines;
}

/** The name the base image gets in podman. */
const BASE_IMAGE = "localhost/compose-verify/debian:bookworm";

/** Which stand-in folder builds `image`; throws for an image without a stand-in. */
export function standinFolder(image: string): string {
  const folder = STANDIN_FOLDERS[image.replace(/:[^/:]*$/, "")];
  if (!folder) {
    throw new Error(
      `no stand-in for ${image}: add docker/standins/<name>/ and map it in standins.ts`,
    );
  }
  return folder;
}

/** Throws when podman already holds one of `images` that is not a stand-in, so none is shadowed. */
export async function refuseToShadow(images: string[]): Promise<void> {
  for (const image of images) {
    const out = await run("podman", ["image", "inspect", "--format", "{{json .Labels}}", image], {
      allowFailure: true,
    });
    if (out.code !== 0) continue;
    const labels = JSON.parse(out.stdout || "{}") as Record<string, string> | null;
    if (!labels?.[RUN_LABEL]) {
      throw new Error(
        `podman already has ${image} and it is not a stand-in; remove it or verify with Docker`,
      );
    }
  }
}

/** The Debian mirror the host's apt uses, so debootstrap needs no other network access. */
async function hostDebianMirror(): Promise<string> {
  const files = ["/etc/apt/sources.list"];
  try {
    for await (const entry of Deno.readDir("/etc/apt/sources.list.d")) {
      files.push(`/etc/apt/sources.list.d/${entry.name}`);
    }
  } catch { /* no such folder */ }
  for (const file of files) {
    let text = "";
    try {
      text = await Deno.readTextFile(file);
    } catch {
      continue;
    }
    for (const match of text.matchAll(/^(?:deb\s+(?:\[[^\]]*\]\s+)?|URIs:\s*)(\S+)/gm)) {
      if (/\/debian\/?$/.test(match[1]!)) return match[1]!;
    }
  }
  return "http://deb.debian.org/debian";
}

/** The HTTP proxy apt is configured with, if any. */
async function aptProxy(): Promise<string | undefined> {
  const out = await run("apt-config", ["dump", "Acquire::http::Proxy"], { allowFailure: true })
    .catch(() => undefined);
  return /^Acquire::http::Proxy "([^"]+)";/m.exec(out?.stdout ?? "")?.[1];
}

/**
 * debootstrap (minbase) into `work`/rootfs, made apt-friendly for image builds (no services start,
 * no recommends, no docs), with the host's CA bundle, then `podman import` as BASE_IMAGE.
 */
export async function buildBaseImage(work: string, runId: string): Promise<string> {
  const rootfs = `${work}/rootfs`;
  const mirror = await hostDebianMirror();
  const proxy = await aptProxy();
  // A mirror sometimes drops a download ("Couldn't download packages"): one more try from scratch.
  for (let attempt = 1;; attempt++) {
    try {
      await run("debootstrap", ["--variant=minbase", "bookworm", rootfs, mirror], {
        env: proxy ? { http_proxy: proxy } : {},
      });
      break;
    } catch (err) {
      // Not after a stop (SIGTERM, SIGKILL: Ctrl-C or a timeout).
      if (attempt >= 2 || /exited with (137|143)$/.test((err as Error).message)) throw err;
      await removeWorkDir(rootfs);
    }
  }
  await run("sh", [
    "-c",
    'rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*',
    "-",
    rootfs,
  ]);
  const files: Record<string, string> = {
    "etc/apt/apt.conf.d/90compose-verify": 'APT::Install-Recommends "false";\n' +
      'Acquire::Languages "none";\n' + (proxy ? `Acquire::http::Proxy "${proxy}";\n` : ""),
    "etc/dpkg/dpkg.cfg.d/90compose-verify": "force-unsafe-io\npath-exclude /usr/share/doc/*\n" +
      "path-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\n",
  };
  for (const [path, text] of Object.entries(files)) {
    await Deno.writeTextFile(`${rootfs}/${path}`, text);
  }
  // Package scripts must not try to start services during an image build.
  await Deno.writeTextFile(`${rootfs}/usr/sbin/policy-rc.d`, "#!/bin/sh\nexit 101\n", {
    mode: 0o755,
  });
  // Containers then trust what the host trusts, a TLS-inspecting proxy's CA included.
  const caBundle = "/etc/ssl/certs/ca-certificates.crt";
  await Deno.mkdir(`${rootfs}/etc/ssl/certs`, { recursive: true });
  await Deno.copyFile(caBundle, `${rootfs}${caBundle}`).catch(() => {/* the host has none */});
  await run("tar", ["-C", rootfs, "-cf", `${work}/rootfs.tar`, "."]);
  await run("podman", [
    "import",
    "--change",
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "--change",
    `LABEL ${RUN_LABEL}=${runId}`,
    "--change",
    'CMD ["bash"]',
    `${work}/rootfs.tar`,
    BASE_IMAGE,
  ]);
  await Deno.remove(`${work}/rootfs.tar`);
  return mirror;
}

/**
 * Builds the stand-in for `image` from docker/standins/<folder> on BASE_IMAGE and tags it `image`.
 * The Deno stand-in's context also gets the deno binary of the image's version from npm.
 */
export async function buildStandin(image: string, root: string, work: string): Promise<void> {
  const folder = standinFolder(image);
  const context = `${work}/context-${folder}`;
  await run("cp", ["-r", `${root}/docker/standins/${folder}`, context]);
  const args = ["--build-arg", `BASE=${BASE_IMAGE}`];
  if (folder === "deno") {
    const version = /(\d+\.\d+\.\d+)/.exec(image.split(":").at(-1)!)?.[1];
    if (!version) throw new Error(`cannot tell the Deno version of ${image}`);
    await Deno.copyFile(await denoFromNpm(version, work), `${context}/deno`);
    await Deno.chmod(`${context}/deno`, 0o755);
    args.push("--build-arg", `DENO_VERSION=${version}`);
  }
  await run("podman", ["build", "--pull=never", "--layers=false", ...args, "-t", image, context]);
}

/** Fetches npm's @deno/linux-<arch>-glibc@`version` with Deno's npm client into `work`. */
async function denoFromNpm(version: string, work: string): Promise<string> {
  const arch = Deno.build.arch === "aarch64" ? "arm64" : "x64";
  const name = `@deno/linux-${arch}-glibc`;
  const denoDir = `${work}/deno-npm`;
  await Deno.mkdir(denoDir, { recursive: true });
  await run(Deno.execPath(), [
    "cache",
    "--quiet",
    "--no-config",
    "--no-lock",
    `npm:${name}@${version}`,
  ], {
    cwd: work,
    env: { DENO_DIR: denoDir },
  });
  const registry =
    new URL(Deno.env.get("NPM_CONFIG_REGISTRY") ?? "https://registry.npmjs.org").host;
  return `${denoDir}/npm/${registry}/${name}/${version}/deno`;
}
