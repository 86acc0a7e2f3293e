#!/usr/bin/env bash
# Download the real datasets into data/raw/NAME/ (data/ is git-ignored: none of it goes into git).
#
#   ./dataset.sh --list              the datasets this script knows
#   ./dataset.sh NAME [NAME...]      download them; run it again to resume an interrupted download
#   ./dataset.sh --help
#
# Then turn each into the internal format with `python -m offline prepare ...` (printed after each).
#
# Verification, honestly: the publishers give no checksums or sizes for these files (none found on
# their pages or in code that uses them), so a first download cannot be checked against a known
# value. What this script does instead:
#   - a file is moved into place only when complete: curl/wget succeeded, a .gz passes `gzip -t`,
#     an .npy starts with the NumPy magic; until then it is NAME/FILE.part, which the next run resumes;
#   - the size and sha256 of each completed file are then recorded in data/raw/NAME/SHA256SUMS
#     ("sha256 size file" lines; trust on first use), and every later run verifies the files against
#     that record and fails, naming the file and the fix, on a mismatch.
#
# Environment:
#   RAW              where the datasets go (default: data/raw next to this script)
#   DATASET_MIRROR   a base URL laid out as NAME/FILE that replaces every upstream URL (tests point it
#                    at a local server; also useful behind a proxy cache)
#   DATASET_VERIFY   "full" (default): size and sha256 on every run; "size": sha256 only after downloads
#   DATASET_ATTEMPTS attempts per URL (default 3), DATASET_RETRY_DELAY seconds between them (default 5)
#   KAGGLE           the Kaggle CLI (default: kaggle), for hm
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RAW="${RAW:-$HERE/data/raw}"
MIRROR="${DATASET_MIRROR:-}"
VERIFY="${DATASET_VERIFY:-full}"
ATTEMPTS="${DATASET_ATTEMPTS:-3}"
RETRY_DELAY="${DATASET_RETRY_DELAY:-5}"
KAGGLE="${KAGGLE:-kaggle}"

DVBPR="https://cseweb.ucsd.edu/~wckang/DVBPR"                            # Kang et al., ICDM 2017
A14="https://snap.stanford.edu/data/amazon/productGraph/categoryFiles"    # McAuley et al., SIGIR 2015
A18="https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2"          # Ni et al., EMNLP 2019
A18_ALT="https://mcauleylab.ucsd.edu/public_datasets/data/amazon_v2"      # the same files, second host
A18_DEFAULT=(AMAZON_FASHION Clothing_Shoes_and_Jewelry)
HM_COMPETITION="h-and-m-personalized-fashion-recommendations"

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

list() {
  cat <<EOF
AmazonFashion         DVBPR's Amazon Fashion (6 categories), photos inside: AmazonFashion6ImgPartitioned.npy
AmazonWomen           DVBPR's Amazon Women, photos inside: AmazonWomenWithImgPartitioned.npy
AmazonMen             DVBPR's Amazon Men, photos inside: AmazonMenWithImgPartitioned.npy
amazon2014-clothing   Amazon 2014 Clothing, Shoes & Jewelry 5-core reviews + metadata (photo URLs)
amazon2018-CATEGORY   Amazon 2018 5-core reviews + metadata (photo URLs) of one CATEGORY, e.g. amazon2018-AMAZON_FASHION
amazon2018            amazon2018-CATEGORY for each of: ${A18_DEFAULT[*]}
hm                    H&M Personalized Fashion Recommendations (Kaggle: account, accepted rules, kaggle CLI)
EOF
}

say() { echo "dataset.sh: $*"; }
fail() { echo "dataset.sh: $*" >&2; return 1; }

# files NAME -> lines "FILE URL [FALLBACK_URL]"; fails for an unknown name
files() {
  local name=$1 cat
  case $name in
    AmazonFashion) echo "AmazonFashion6ImgPartitioned.npy $DVBPR/AmazonFashion6ImgPartitioned.npy" ;;
    AmazonWomen) echo "AmazonWomenWithImgPartitioned.npy $DVBPR/AmazonWomenWithImgPartitioned.npy" ;;
    AmazonMen) echo "AmazonMenWithImgPartitioned.npy $DVBPR/AmazonMenWithImgPartitioned.npy" ;;
    amazon2014-clothing)
      echo "reviews_Clothing_Shoes_and_Jewelry_5.json.gz $A14/reviews_Clothing_Shoes_and_Jewelry_5.json.gz"
      echo "meta_Clothing_Shoes_and_Jewelry.json.gz $A14/meta_Clothing_Shoes_and_Jewelry.json.gz" ;;
    amazon2018-*)
      cat=${name#amazon2018-}
      [[ $cat =~ ^[A-Za-z_]+$ ]] || return 1  # a category name only: it goes into URLs and paths
      echo "${cat}_5.json.gz $A18/categoryFilesSmall/${cat}_5.json.gz $A18_ALT/categoryFilesSmall/${cat}_5.json.gz"
      echo "meta_${cat}.json.gz $A18/metaFiles2/meta_${cat}.json.gz $A18_ALT/metaFiles2/meta_${cat}.json.gz" ;;
    *) return 1 ;;
  esac
}

prepare_hint() {
  local name=$1 dir="$RAW/$1"
  case $name in
    AmazonFashion | AmazonWomen | AmazonMen) echo "python -m offline prepare dvbpr --source $dir --out data/$name" ;;
    amazon2014-*) echo "python -m offline prepare amazon2014 --source $dir --out data/$name [--subset men|women] [--fetch-images]" ;;
    amazon2018-*) echo "python -m offline prepare amazon2018 --source $dir --out data/$name [--fetch-images]" ;;
    hm) echo "python -m offline prepare hm --source $dir --out data/hm" ;;
  esac
}

size_of() { wc -c <"$1" | tr -d ' '; }

sha256_of() {
  if command -v sha256sum >/dev/null; then sha256sum "$1" | cut -d' ' -f1; else shasum -a 256 "$1" | cut -d' ' -f1; fi
}

# check_format PATH NAME: the cheap structural checks a truncated or wrong download fails (by NAME:
# PATH is still FILE.part)
check_format() {
  local file=$1
  case $2 in
    *.gz) gzip -t "$file" 2>/dev/null || fail "$file is not a complete gzip file" ;;
    *.npy) [[ "$(head -c 6 "$file" | tail -c 5)" == NUMPY ]] || fail "$file is not a NumPy .npy file" ;;
  esac
}

# verify DIR FILE FULL: against DIR/SHA256SUMS; records the file there when it is not listed yet
verify() {
  local dir=$1 file=$2 full=$3 path="$1/$2" sums="$1/SHA256SUMS" want size sha
  want=$(awk -v f="$file" '$3 == f { print $1, $2 }' "$sums" 2>/dev/null || true)
  size=$(size_of "$path")
  if [[ -z $want ]]; then
    sha=$(sha256_of "$path")
    echo "$sha $size $file" >>"$sums"
    say "recorded $path: $size bytes, sha256 $sha (in $sums; later runs verify against it)"
    return 0
  fi
  if [[ $size != "${want#* }" ]]; then
    fail "$path: size $size bytes differs from ${want#* } recorded in $sums when it was first downloaded." \
      "It is truncated or changed: delete it and run ./dataset.sh $(basename "$dir") again" \
      "(if the publisher really changed the file, also delete its line in $sums)."
    return 1
  fi
  [[ $full == yes ]] || return 0
  sha=$(sha256_of "$path")
  if [[ $sha != "${want% *}" ]]; then
    fail "$path: sha256 $sha does not match ${want% *} recorded in $sums when it was first downloaded." \
      "It is corrupt or changed: delete it and run ./dataset.sh $(basename "$dir") again" \
      "(if the publisher really changed the file, also delete its line in $sums)."
    return 1
  fi
}

# download URL PART: one resumable attempt; 0 = complete
download() {
  local url=$1 part=$2
  if command -v curl >/dev/null; then
    curl --fail --silent --show-error --location --connect-timeout 30 -C - -o "$part" "$url"
  else
    wget --quiet --continue --tries=1 --timeout=30 -O "$part" "$url"
  fi
}

# remote_size URL: Content-Length of the final response to a HEAD request, "" when unknown
remote_size() {
  command -v curl >/dev/null || return 0
  curl --fail --silent --head --location --connect-timeout 30 "$1" 2>/dev/null |
    awk 'tolower($1) == "content-length:" { n = $2 } END { sub(/\r$/, "", n); print n }' || true
}

# fetch NAME FILE URL...: resumable download into RAW/NAME/FILE, then verified
fetch() {
  local name=$1 file=$2 dir="$RAW/$1" url attempt rc remote
  shift 2
  local dest="$dir/$file" part="$dir/$file.part"
  mkdir -p "$dir"
  if [[ -f $dest ]]; then
    if ! grep -q " $file\$" "$dir/SHA256SUMS" 2>/dev/null; then  # not recorded yet (an older download)
      check_format "$dest" "$file" || { fail "delete $dest and run ./dataset.sh $name again"; return 1; }
    fi
    verify "$dir" "$file" "$([[ $VERIFY == full ]] && echo yes || echo no)" || return 1
    say "have $dest ($(size_of "$dest") bytes, verified)"
    return 0
  fi
  [[ -z $MIRROR ]] || set -- "${MIRROR%/}/$name/$file"
  for url in "$@"; do
    for ((attempt = 1; attempt <= ATTEMPTS; attempt++)); do
      say "downloading $url -> $dest$([[ -s $part ]] && echo " (resuming at $(size_of "$part") bytes)") [attempt $attempt/$ATTEMPTS]"
      rc=0 remote=""
      # A resumed download that had in fact finished would get 416 from the server, and a .part
      # longer than the file cannot be resumed: ask for the size first.
      [[ ! -s $part ]] || remote=$(remote_size "$url")
      if [[ $remote =~ ^[0-9]+$ ]] && (($(size_of "$part") > remote)); then
        say "$part is larger than the file on the server: starting again"
        rm -f "$part"
      fi
      if [[ -s $part && $remote =~ ^[0-9]+$ && $(size_of "$part") == "$remote" ]]; then
        say "$part is already complete"
      else
        download "$url" "$part" || rc=$?
      fi
      if ((rc == 0)); then
        if ! check_format "$part" "$file"; then
          fail "the download of $url is damaged; delete $part and run ./dataset.sh $name again"
          return 1
        fi
        mv "$part" "$dest"
        if ! verify "$dir" "$file" yes; then
          mv "$dest" "$dest.mismatch"
          fail "kept the new download as $dest.mismatch for inspection"
          return 1
        fi
        say "got $dest ($(size_of "$dest") bytes)"
        return 0
      fi
      if ((rc == 33)); then
        fail "$url: the server cannot resume $part; delete it to download from the start"
        return 1
      fi
      if ((rc == 22)) && [[ ! -s $part ]]; then break; fi  # an HTTP error such as 404: try the next URL
      ((attempt == ATTEMPTS)) || sleep "$RETRY_DELAY"
    done
  done
  fail "could not download $file (tried: $*); check the network, or set DATASET_MIRROR"
}

hm_instructions() {
  cat >&2 <<EOF
dataset.sh: hm comes from Kaggle and needs an account. Once:
  1. sign in at https://www.kaggle.com and accept the competition rules at
     https://www.kaggle.com/competitions/$HM_COMPETITION/rules ("I Understand and Accept");
  2. create an API token (https://www.kaggle.com/settings -> API -> Create New Token) and save it as
     ~/.kaggle/kaggle.json (chmod 600), or export KAGGLE_USERNAME and KAGGLE_KEY;
  3. pip install kaggle
Then run ./dataset.sh hm again, or by hand:
  kaggle competitions download -c $HM_COMPETITION -p $RAW/hm && unzip -n $RAW/hm/$HM_COMPETITION.zip -d $RAW/hm
(about 30 GB with the photos; the Kaggle terms allow non-commercial research and education only)
EOF
}

fetch_hm() {
  local dir="$RAW/hm" zip="$RAW/hm/$HM_COMPETITION.zip"
  if ! command -v "$KAGGLE" >/dev/null; then
    fail "hm: the Kaggle CLI ($KAGGLE) is not installed"
    hm_instructions
    return 1
  fi
  if [[ ! -f ${KAGGLE_CONFIG_DIR:-$HOME/.kaggle}/kaggle.json && ! -f $HOME/.config/kaggle/kaggle.json &&
    (-z ${KAGGLE_USERNAME:-} || -z ${KAGGLE_KEY:-}) ]]; then
    fail "hm: no Kaggle API credentials found"
    hm_instructions
    return 1
  fi
  mkdir -p "$dir"
  if ! "$KAGGLE" competitions download -c "$HM_COMPETITION" -p "$dir"; then
    fail "hm: the Kaggle download failed; have you accepted the rules at https://www.kaggle.com/competitions/$HM_COMPETITION/rules ?"
    return 1
  fi
  [[ -f $zip ]] || { fail "hm: expected $zip after the Kaggle download"; return 1; }
  say "unpacking $zip (files already there are skipped)"
  if command -v unzip >/dev/null; then
    unzip -q -n "$zip" -d "$dir"
  else
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$zip" "$dir"
  fi
  verify "$dir" "$HM_COMPETITION.zip" "$([[ $VERIFY == full ]] && echo yes || echo no)"
}

main() {
  case ${1:-} in
    "" | -h | --help) usage; return 0 ;;
    -l | --list) list; return 0 ;;
  esac
  local names=() name line cat failed=()
  for name in "$@"; do  # check every name before downloading anything
    if [[ $name == amazon2018 ]]; then
      for cat in "${A18_DEFAULT[@]}"; do names+=("amazon2018-$cat"); done
    elif [[ $name == hm ]] || files "$name" >/dev/null; then
      names+=("$name")
    else
      echo "dataset.sh: unknown dataset '$name'; ./dataset.sh --list shows the names" >&2
      return 2
    fi
  done
  for name in "${names[@]}"; do
    if [[ $name == hm ]]; then
      fetch_hm || failed+=("$name")
    else
      while read -r line <&3; do  # fd 3: a downloader must never eat this list from stdin
        # shellcheck disable=SC2086  # FILE URL [URL]: split on purpose
        fetch "$name" $line || { failed+=("$name"); break; }
      done 3< <(files "$name")
    fi
    [[ " ${failed[*]-} " == *" $name "* ]] || say "$name ready in $RAW/$name; next: $(prepare_hint "$name")"
  done
  if ((${#failed[@]})); then
    echo "dataset.sh: failed: ${failed[*]}" >&2
    return 1
  fi
}

main "$@"
