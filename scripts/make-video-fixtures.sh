#!/usr/bin/env bash
# Builds the small video fixtures in tests/fixtures/video/ with ffmpeg.
#
# Run by a developer when a fixture must change (`apt-get install ffmpeg`), not by CI: the files are
# committed. Each passing file is the smallest that passes the `brief` policy (720x1280, >= 516 kbps);
# each failing file breaks one rule where it can. tests/it/media.rs holds the exact expected outcome of
# every file, so a change here shows up there.
#
#   bash scripts/make-video-fixtures.sh [OUT_DIR]
set -euo pipefail
out=${1:-"$(cd "$(dirname "$0")/.." && pwd)/tests/fixtures/video"}
mkdir -p "$out"
cd "$out"
command -v ffmpeg >/dev/null || { echo "ffmpeg is missing: apt-get install ffmpeg" >&2; exit 1; }

ff() { ffmpeg -nostdin -hide_banner -loglevel error -y "$@"; }
# A still picture at constant bitrate: x264's CBR filler is 0xFF bytes, so the files compress in git.
still() { echo "-f lavfi -i color=c=0x3366aa:s=$1:r=$2:d=$3"; }
# Moving noise for encoders without CBR filler (x265, libvpx): they reach the target bitrate on it.
noisy() { echo "-f lavfi -i color=c=0x3366aa:s=$1:r=$2:d=$3,noise=alls=${4:-30}:allf=t"; }
tone() { echo "-f lavfi -i sine=frequency=440:sample_rate=44100:duration=$1"; }
h264_cbr() { echo "-c:v libx264 -preset ultrafast -pix_fmt yuv420p -b:v $1 -minrate $1 -maxrate $1 -bufsize $1 -x264-params nal-hrd=cbr"; }
aac="-c:a aac -b:a 96k"

# --- passing files ---------------------------------------------------------------------------
ff $(still 720x1280 30 1.2) $(tone 1.2) $(h264_cbr 900k) $aac -movflags +faststart good.mp4
ff $(still 720x1280 30 1.2) $(tone 1.2) $(h264_cbr 900k) $aac good_moov_end.mp4
ff $(still 720x1280 30 1.2) $(tone 1.2) $(h264_cbr 900k) $aac -f mov good.mov
ff $(still 1080x1920 60 1.2) $(tone 1.2) $(h264_cbr 1200k) $aac -movflags +faststart good_1080x1920_60fps.mp4
ff $(noisy 720x1280 30 1.2) $(tone 1.2) -c:v libx265 -preset ultrafast -x265-params log-level=error:bitrate=900:vbv-maxrate=900:vbv-bufsize=900:filler=1 \
   $aac -tag:v hvc1 -movflags +faststart good_hevc_hvc1.mp4
ff $(noisy 720x1280 30 1.2) $(tone 1.2) -c:v libx265 -preset ultrafast -x265-params log-level=error:bitrate=900:vbv-maxrate=900:vbv-bufsize=900:filler=1 \
   $aac -tag:v hev1 -movflags +faststart good_hevc_hev1.mp4
ff $(still 720x1280 30 1.2) $(h264_cbr 900k) -movflags +faststart good_no_audio.mp4
# Stored landscape with a 90 degree display matrix, as phones write it: shows as 720x1280.
# (ffmpeg 5.1 writes the matrix only when stream-copying.)
ff $(still 1280x720 30 1.2) $(tone 1.2) $(h264_cbr 900k) $aac rotated_src.mp4
ff -i rotated_src.mp4 -c copy -metadata:s:v:0 rotate=90 -movflags +faststart good_rotated.mp4
rm rotated_src.mp4
ff $(still 720x1280 30 1.2) $(tone 1.2) $(h264_cbr 900k) $aac -movflags frag_keyframe+empty_moov good_fragmented.mp4
ff $(still 720x1280 24000/1001 1.2) $(tone 1.2) $(h264_cbr 900k) $aac -movflags +faststart good_fps23976.mp4
# Variable frame rate: 0.6 s at 30 fps, then 0.6 s at 60 fps.
ff -f lavfi -i "color=c=0x3366aa:s=720x1280:r=30:d=0.6" -f lavfi -i "color=c=0x3366aa:s=720x1280:r=60:d=0.6" \
   -filter_complex "[0:v][1:v]concat=n=2:v=1[v]" -map "[v]" -fps_mode vfr $(h264_cbr 900k) -movflags +faststart good_vfr.mp4
ff $(noisy 720x1280 30 1.2 4) $(tone 1.2) -c:v libvpx-vp9 -b:v 900k -minrate 900k -maxrate 900k -deadline realtime -cpu-used 8 \
   -c:a libopus -b:a 64k good_vp9_opus.webm
# Muxed as a live stream: no Duration, no Cues (like a browser's MediaRecorder output).
ff $(noisy 720x1280 30 1.2 4) $(tone 1.2) -c:v libvpx-vp9 -b:v 900k -minrate 900k -maxrate 900k -deadline realtime -cpu-used 8 \
   -c:a libopus -b:a 64k -live 1 -f webm good_webm_live.webm

# --- each breaks one rule -----------------------------------------------------------------------
ff $(still 720x1280 30 0.5) $(tone 0.5) $(h264_cbr 900k) $aac -movflags +faststart short_0_5s.mp4
ff $(still 1280x1280 30 1.2) $(tone 1.2) $(h264_cbr 900k) $aac -movflags +faststart square_1280x1280.mp4
ff $(still 540x960 30 1.2) $(tone 1.2) $(h264_cbr 900k) $aac -movflags +faststart small_540x960.mp4
ff $(still 720x1280 15 1.2) $(tone 1.2) $(h264_cbr 900k) $aac -movflags +faststart fps15.mp4
ff $(still 720x1280 30 1.0) $(h264_cbr 26M) -movflags +faststart bitrate_26mbps.mp4
ff $(still 720x1280 30 1.2) $(tone 1.2) -c:v libx264 -preset ultrafast -crf 51 $aac -movflags +faststart bitrate_low.mp4
ff $(still 720x1280 30 1.2) $(tone 1.2) $(h264_cbr 900k) -c:a libmp3lame -b:a 96k -movflags +faststart mp3_audio.mp4
ff $(tone 1.2) $aac -movflags +faststart audio_only.mp4
ff $(noisy 720x1280 30 1.2 4) $(tone 1.2) -c:v mpeg4 -b:v 900k $aac -movflags +faststart mpeg4_part2.mp4
# A Matroska file (DocType "matroska") with H.264 + AAC, named .webm.
ff $(still 720x1280 30 1.2) $(tone 1.2) $(h264_cbr 900k) $aac -f matroska matroska_named.webm
# 11 minutes: too long (and, to stay small, also below the bitrate floor; the pure duration
# boundary is tested on synthetic descriptions).
ff $(still 720x1280 1 660) -c:v libx264 -preset ultrafast -crf 51 -g 600 -movflags +faststart long_11min.mp4

# --- not probe-able -----------------------------------------------------------------------------
size=$(stat -c %s good.mp4); head -c $((size * 6 / 10)) good.mp4 > truncated.mp4
size=$(stat -c %s good_moov_end.mp4); head -c $((size * 6 / 10)) good_moov_end.mp4 > truncated_moov_end.mp4
# 64 bytes of noise over the sample tables (stbl) of good.mp4, seeded so the file is reproducible.
cp good.mp4 corrupt_moov.mp4
off=$(grep -obUaP "stbl" corrupt_moov.mp4 | head -1 | cut -d: -f1)
python3 -c "import random,sys; random.seed(7); sys.stdout.buffer.write(bytes(random.randrange(256) for _ in range(64)))" |
  dd of=corrupt_moov.mp4 bs=1 seek=$((off + 8)) conv=notrunc status=none
printf 'This is a text file with a video name.\n' > not_video.mp4
: > empty.mp4

ls -l "$out"
