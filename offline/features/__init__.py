"""What models read: region features of every photo from a pretrained CNN, and the review vocabulary."""
