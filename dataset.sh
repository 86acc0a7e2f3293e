#!/usr/bin/env bash
# Download the real datasets into data/raw/ (nothing here goes into git). Resumable (curl -C -).
#   ./dataset.sh                 list what can be downloaded
#   ./dataset.sh NAME [NAME...]  download those
# First draft (issue 2): the Amazon review files; DVBPR sets, Amazon 2014 image fetching, checksums and
# `python -m offline prepare` come with the real-data issue.
set -euo pipefail
RAW="${RAW:-data/raw}"
A18="https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2"
A14="http://snap.stanford.edu/data/amazon/productGraph/categoryFiles"

declare -A URLS=(
  [amazon2018-fashion]="$A18/categoryFilesSmall/AMAZON_FASHION_5.json.gz $A18/metaFiles2/meta_AMAZON_FASHION.json.gz"
  [amazon2018-clothing]="$A18/categoryFilesSmall/Clothing_Shoes_and_Jewelry_5.json.gz $A18/metaFiles2/meta_Clothing_Shoes_and_Jewelry.json.gz"
  [amazon2014-clothing]="$A14/reviews_Clothing_Shoes_and_Jewelry_5.json.gz $A14/meta_Clothing_Shoes_and_Jewelry.json.gz"
)

usage() {
  echo "usage: $0 NAME [NAME...]"; echo "datasets:"
  for name in "${!URLS[@]}"; do echo "  $name"; done | sort
  echo "  hm   (Kaggle terms apply: kaggle competitions download -c h-and-m-personalized-fashion-recommendations -p $RAW/hm)"
}

fetch() {  # fetch URL DIR: resumable download, kept only when complete
  local url=$1 dir=$2 file
  file="$dir/$(basename "$url")"
  mkdir -p "$dir"
  if [[ -s "$file" ]]; then echo "have $file"; return; fi
  curl --fail --location --retry 5 --retry-delay 5 -C - -o "$file.part" "$url"
  mv "$file.part" "$file"
  echo "got $file ($(du -h "$file" | cut -f1))"
}

[[ $# -gt 0 ]] || { usage; exit 0; }
for name in "$@"; do
  if [[ $name == hm ]]; then
    command -v kaggle >/dev/null || { echo "hm: install the kaggle CLI and accept the competition rules first" >&2; exit 2; }
    kaggle competitions download -c h-and-m-personalized-fashion-recommendations -p "$RAW/hm"
    continue
  fi
  [[ -n "${URLS[$name]:-}" ]] || { echo "unknown dataset: $name" >&2; usage >&2; exit 2; }
  for url in ${URLS[$name]}; do fetch "$url" "$RAW/$name"; done
done
